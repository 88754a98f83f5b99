"""AuctionEventStore.lot_facts and funnel_counts on every backend, from the figures each store keeps as
the events arrive: equal to the plain computations over the loaded events (ingest_service.audience),
from any start, whatever order the events came in, and near the end of the retention."""

from __future__ import annotations

import random

from ingest_service import audience
from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, LotOutcome
from ingest_service.domain import AnalyticsRange
from ingest_service.sketches import SketchMerger
from ingest_service.storage.event_port import AuctionEventStore, FunnelCounts
from testkit.waiting import poll
from tests.contract.conftest import RETENTION_DAYS, Backend
from tests.contract.test_auction_event_store_contract import events  # noqa: F401 (the fixture)

DAY = 86_400
LOT_KINDS = (EventKind.LOT_OPENED, EventKind.LOT_CLOSED, EventKind.BID_PLACED)


def opened(event_id: str, at: float, lot: str, title: str = "", auction: str = "a-1") -> AuctionEvent:
    return AuctionEvent(event_id, auction, at, EventKind.LOT_OPENED, lot_id=lot, title=title or lot)


def closed(
    event_id: str, at: float, lot: str, outcome: LotOutcome, winner: str = "", auction: str = "a-1"
) -> AuctionEvent:
    sold = outcome is LotOutcome.SOLD
    return AuctionEvent(
        event_id, auction, at, EventKind.LOT_CLOSED, lot_id=lot, outcome=outcome,
        amount=5000 if sold else 0, currency="EUR" if sold else "", bidder_id=winner if sold else "",
    )  # fmt: skip


def bid(event_id: str, at: float, lot: str, bidder: str, auction: str = "a-1") -> AuctionEvent:
    return AuctionEvent(
        event_id, auction, at, EventKind.BID_PLACED, lot_id=lot, amount=1000, currency="EUR",
        bidder_id=bidder, channel=BidChannel.ONLINE,
    )  # fmt: skip


def lots(start: int, auction: str = "a-1") -> list[AuctionEvent]:
    """Lots of every shape the plain computation has a rule for."""
    a = auction
    written = [
        # Sold, bids from two bidders.
        opened("a-o", start + 10, "lot-a", "Tea bowl", a),
        bid("a-b1", start + 20, "lot-a", "alice", a),
        bid("a-b2", start + 25, "lot-a", "bob", a),
        bid("a-b3", start + 28, "lot-a", "alice", a),
        closed("a-c", start + 60, "lot-a", LotOutcome.SOLD, "alice", a),
        # Never closed: it ends at the next lot's opening.
        opened("b-o", start + 70, "lot-b", "Screen", a),
        bid("b-b1", start + 75, "lot-b", "carol", a),
        # Bids before its opening are not its bids.
        bid("c-b0", start + 100, "lot-c", "dave", a),
        bid("c-b1", start + 105, "lot-c", "erin", a),
        opened("c-o", start + 110, "lot-c", "Vase", a),
        bid("c-b2", start + 120, "lot-c", "dave", a),
        closed("c-c", start + 150, "lot-c", LotOutcome.PASSED, auction=a),
        # Closed before it opened (a backend's clock, a retry): the first close is still its close.
        closed("d-c", start + 160, "lot-d", LotOutcome.WITHDRAWN, auction=a),
        opened("d-o", start + 170, "lot-d", "Clock", a),
        bid("d-b1", start + 175, "lot-d", "frank", a),
        # Opened, closed, opened again and sold: from a start between the two, a lot of its own.
        opened("e-o1", start + 200, "lot-e", "Chair", a),
        bid("e-b1", start + 210, "lot-e", "alice", a),
        closed("e-c1", start + 230, "lot-e", LotOutcome.PASSED, auction=a),
        opened("e-o2", start + 300, "lot-e", "Chair (again)", a),
        bid("e-b2", start + 310, "lot-e", "bob", a),
        bid("e-b3", start + 320, "lot-e", "gina", a),
        closed("e-c2", start + 330, "lot-e", LotOutcome.SOLD, "gina", a),
        # Two openings at one moment: the smaller event id is the opening.
        opened("f-o2", start + 400, "lot-f", "Second title", a),
        opened("f-o1", start + 400, "lot-f", "First title", a),
        bid("f-b1", start + 400, "lot-f", "hal", a),
        # Bids and a close for a lot never opened: left out.
        bid("g-b1", start + 450, "lot-g", "ivy", a),
        closed("g-c", start + 460, "lot-g", LotOutcome.PASSED, auction=a),
        # The last lot: no bid, no close.
        opened("h-o", start + 500, "lot-h", "Rug", a),
    ]
    return written


async def expected_facts(
    store: AuctionEventStore, auction: str, since: int | None
) -> list[audience.LotFacts]:
    loaded = await store.query_events(AnalyticsRange(auction, since, None), LOT_KINDS)
    return audience.lot_facts(loaded)


async def expected_counts(store: AuctionEventStore, query: AnalyticsRange) -> FunnelCounts:
    plain = audience.funnel(await store.query_events(query), SketchMerger().result())
    return FunnelCounts(plain.bidders, plain.bids, plain.lots_sold, plain.winners)


async def test_lot_facts_equal_the_plain_computation_from_any_start_in_any_arrival_order(
    backend: Backend,
    events: AuctionEventStore,  # noqa: F811
) -> None:
    start = int(backend.clock.now) - 3600
    written = lots(start)
    # The backend sends in batches, out of order, and re-sends some of them after a lost answer.
    shuffled = list(written)
    random.Random(21).shuffle(shuffled)
    for at in range(0, len(shuffled), 4):
        await events.insert_events(shuffled[at : at + 4])
    await events.insert_events(shuffled[:6])
    await events.insert_events(lots(start, "other"))

    facts = await events.lot_facts("a-1", None)
    assert [each.lot_id for each in facts] == ["lot-a", "lot-b", "lot-c", "lot-d", "lot-e", "lot-f", "lot-h"]
    by_lot = {each.lot_id: each for each in facts}
    assert (by_lot["lot-a"].bids, by_lot["lot-a"].bidders, by_lot["lot-c"].bids) == (3, 2, 1)
    assert by_lot["lot-d"].close is not None
    assert by_lot["lot-d"].close.closed_at == start + 160
    assert (by_lot["lot-e"].title, by_lot["lot-e"].bids, by_lot["lot-f"].title) == ("Chair", 3, "First title")
    assert (by_lot["lot-h"].last_bid_at, by_lot["lot-h"].close) == (None, None)

    starts = [None] + [start + offset for offset in (0, 10, 11, 105, 165, 250, 300, 301, 600)]
    for since in starts:
        assert await events.lot_facts("a-1", since) == await expected_facts(events, "a-1", since), since
    # The funnel's bidders and bids, kept per bidder across the batches, for ranges that hold a
    # bidder's every bid, some of them, or none.
    for low, high in ((None, None), (start, start + 3600), (start + 100, None), (None, start + 205)):
        query = AnalyticsRange("a-1", low, high)
        assert await events.funnel_counts(query) == await expected_counts(events, query), (low, high)
    reopened = {each.lot_id: each for each in await events.lot_facts("a-1", start + 250)}["lot-e"]
    assert (reopened.title, reopened.bids, reopened.bidders) == ("Chair (again)", 2, 2)
    assert await events.lot_facts("nobody", None) == []

    # A bid arriving later for a lot already kept, and an earlier opening of another: both counted.
    await events.insert_events([bid("a-b4", start + 30, "lot-a", "zoe"), opened("g-o", start + 440, "lot-g")])
    for since in (None, start + 300):
        assert await events.lot_facts("a-1", since) == await expected_facts(events, "a-1", since), since
    assert {each.lot_id: each.bidders for each in await events.lot_facts("a-1", None)}["lot-a"] == 3


async def test_kept_figures_near_the_end_of_the_retention_are_recomputed_from_the_events_left(
    backend: Backend,
    events: AuctionEventStore,  # noqa: F811
) -> None:
    now = int(backend.clock.now)
    old = now - RETENTION_DAYS * DAY - 600
    # An auction half a day before its retention ends, and a lot first opened before the retention,
    # opened again since: its kept first opening is gone once the old events expire.
    near = now - RETENTION_DAYS * DAY + DAY // 2
    await events.insert_events(lots(near, "a-near"))
    await events.insert_events(
        [
            opened("x-o1", old, "lot-x", "Old title", "a-old"),
            bid("x-b1", old + 5, "lot-x", "alice", "a-old"),
            opened("x-o2", now - 120, "lot-x", "New title", "a-old"),
            bid("x-b2", now - 60, "lot-x", "bob", "a-old"),
            bid("x-b3", now - 50, "lot-x", "alice", "a-old"),
        ]
    )
    # a-old is compared only once its old events are gone: MongoDB's TTL monitor may remove them
    # between two reads of this test.
    for since in (None, near + 250):
        assert await events.lot_facts("a-near", since) == await expected_facts(events, "a-near", since)
    for low, high in ((None, None), (near + 100, None), (None, near + 205)):
        query = AnalyticsRange("a-near", low, high)
        assert await events.funnel_counts(query) == await expected_counts(events, query), (low, high)

    await events.purge_expired()

    async def expired() -> bool:
        return len(await events.query_events(AnalyticsRange("a-old", None, None))) == 3

    # MongoDB's TTL monitor works on its own clock; the bounded wait turns "never expired" into a failure.
    await poll(expired, "the old events to expire", within=90 if backend.name == "mongodb" else 15, every=0.2)
    facts = await events.lot_facts("a-old", None)
    assert facts == await expected_facts(events, "a-old", None)
    assert [(each.title, each.bids, each.bidders) for each in facts] == [("New title", 2, 2)]
    everything = AnalyticsRange("a-old", None, None)
    assert await events.funnel_counts(everything) == FunnelCounts(bidders=2, bids=2, lots_sold=0, winners=0)
