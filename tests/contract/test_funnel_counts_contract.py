"""AuctionEventStore.funnel_counts on every backend: the database's counts equal the plain computation
over the loaded events (ingest_service.audience.funnel), for any range."""

from __future__ import annotations

import random

from ingest_service import audience
from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, LotOutcome
from ingest_service.domain import AnalyticsRange
from ingest_service.sketches import SketchMerger
from ingest_service.storage.event_port import AuctionEventStore, FunnelCounts
from tests.contract.conftest import Backend
from tests.contract.test_auction_event_store_contract import events  # noqa: F401 (the fixture)


def auction(now: float, auction_id: str) -> list[AuctionEvent]:
    """Ten lots a minute apart, bids from eight bidders, outcomes of every kind, one lot never closed."""
    rng = random.Random(17)
    start = now - 3600
    written: list[AuctionEvent] = [
        AuctionEvent(f"{auction_id}-s", auction_id, start, EventKind.AUCTION_STARTED)
    ]
    for lot in range(10):
        opened = start + 10 + 60 * lot
        lot_id = f"lot-{lot % 8}"  # two lots reuse an id: a lot sold twice counts once
        written.append(
            AuctionEvent(f"{auction_id}-o{lot}", auction_id, opened, EventKind.LOT_OPENED, lot_id=lot_id)
        )
        bidder = ""
        for number in range(rng.randrange(0, 6)):
            bidder = f"bidder-{rng.randrange(8)}"
            written.append(
                AuctionEvent(
                    f"{auction_id}-b{lot}-{number}", auction_id, opened + 5 + number, EventKind.BID_PLACED,
                    lot_id=lot_id, amount=1000 + number, currency="EUR", bidder_id=bidder,
                    channel=BidChannel.ONLINE,
                )
            )  # fmt: skip
        if lot == 9:
            continue
        if bidder and lot % 4:
            close = AuctionEvent(
                f"{auction_id}-c{lot}", auction_id, opened + 50, EventKind.LOT_CLOSED, lot_id=lot_id,
                outcome=LotOutcome.SOLD, amount=2000, currency="EUR", bidder_id=bidder,
            )  # fmt: skip
        else:
            outcome = LotOutcome.WITHDRAWN if bidder else LotOutcome.PASSED
            close = AuctionEvent(
                f"{auction_id}-c{lot}",
                auction_id,
                opened + 50,
                EventKind.LOT_CLOSED,
                lot_id=lot_id,
                outcome=outcome,
            )
        written.append(close)
    return written


async def test_funnel_counts_equal_the_plain_computation_for_any_range(
    backend: Backend,
    events: AuctionEventStore,  # noqa: F811
) -> None:
    now = int(backend.clock.now)
    written = auction(now, "a-1")
    await events.insert_events(written)
    await events.insert_events(auction(now, "other"))
    start = now - 3600
    ranges: list[tuple[int | None, int | None]] = [
        (None, None),
        (start + 100, None),
        (None, start + 300),
        (start + 125, start + 420),
        (now, None),
    ]
    for low, high in ranges:
        loaded = await events.query_events(AnalyticsRange("a-1", low, high))
        expected = audience.funnel(loaded, SketchMerger().result())
        counts = await events.funnel_counts(AnalyticsRange("a-1", low, high))
        assert counts == FunnelCounts(
            expected.bidders, expected.bids, expected.lots_sold, expected.winners
        ), (
            low,
            high,
        )
    everything = await events.funnel_counts(AnalyticsRange("a-1", None, None))
    assert everything.bids > 0
    assert everything.lots_sold > 0
