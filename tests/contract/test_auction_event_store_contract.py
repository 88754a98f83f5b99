"""The AuctionEventStore contract, and snapshots' samples and sketches: every store alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import datasketches
import pytest

from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, EventOutcome, LotOutcome
from ingest_service.domain import AnalyticsRange
from ingest_service.storage.event_port import AuctionEventStore
from ingest_service.storage.mongo_events import MongoAuctionEventStore
from ingest_service.storage.mongo_store import MongoSnapshotStore
from ingest_service.storage.sqlite_events import SqliteAuctionEventStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from testkit.waiting import poll
from tests.contract.conftest import RETENTION_DAYS, Backend
from tests.support import make_snapshot

STORED, DUPLICATE = EventOutcome.STORED, EventOutcome.DUPLICATE
DAY = 86_400


@pytest.fixture
async def events(backend: Backend) -> AsyncIterator[AuctionEventStore]:
    store: AuctionEventStore
    if isinstance(backend.store, SqliteSnapshotStore):
        store = await SqliteAuctionEventStore.open(
            backend.store, retention_days=RETENTION_DAYS, clock=backend.clock
        )
    else:
        assert isinstance(backend.store, MongoSnapshotStore)
        store = await MongoAuctionEventStore.open(
            backend.store, retention_days=RETENTION_DAYS, clock=backend.clock
        )
    yield store
    await store.close()


def bid(
    event_id: str, at: float, *, auction: str = "a-1", lot: str = "lot-1", bidder: str = "b-1"
) -> AuctionEvent:
    return AuctionEvent(
        event_id,
        auction,
        at,
        EventKind.BID_PLACED,
        lot_id=lot,
        amount=12_500,
        currency="EUR",
        bidder_id=bidder,
        channel=BidChannel.ONLINE,
    )


async def test_events_are_unique_on_event_id_and_the_first_write_wins(
    backend: Backend, events: AuctionEventStore
) -> None:
    now = backend.clock.now
    first = [bid("e-1", now - 30), bid("e-2", now - 20)]
    assert await events.insert_events(first) == [STORED, STORED]
    again = [
        bid("e-2", now - 10, bidder="someone-else"),  # same id, other values
        bid("e-3", now - 5),
        bid("e-3", now - 5),  # repeated inside the batch
    ]
    assert await events.insert_events(again) == [DUPLICATE, STORED, DUPLICATE]
    stored = await events.query_events(AnalyticsRange("a-1", None, None))
    assert [event.event_id for event in stored] == ["e-1", "e-2", "e-3"]
    assert stored[1].bidder_id == "b-1"
    assert await events.insert_events([]) == []


async def test_every_kind_round_trips_with_its_fields(backend: Backend, events: AuctionEventStore) -> None:
    # Whole milliseconds: what MongoDB's dates hold.
    at = backend.clock.now - 100.125
    written = [
        AuctionEvent("s", "a-1", at, EventKind.AUCTION_STARTED),
        AuctionEvent("o", "a-1", at + 1, EventKind.LOT_OPENED, lot_id="lot-7", title="Tea bowl, Edo period"),
        bid("b", at + 2, lot="lot-7"),
        AuctionEvent(
            "c",
            "a-1",
            at + 3,
            EventKind.LOT_CLOSED,
            lot_id="lot-7",
            outcome=LotOutcome.SOLD,
            amount=99_000,
            currency="JPY",
            bidder_id="b-1",
        ),
        AuctionEvent("p", "a-1", at + 4, EventKind.LOT_CLOSED, lot_id="lot-8", outcome=LotOutcome.PASSED),
        AuctionEvent("e", "a-1", at + 5, EventKind.AUCTION_ENDED),
    ]
    assert await events.insert_events(written) == [STORED] * 6
    read = await events.query_events(AnalyticsRange("a-1", None, None))
    assert [fields(e) for e in read] == [fields(e) for e in written]
    assert [e.occurred_at for e in read] == pytest.approx([e.occurred_at for e in written], abs=1e-3)


async def test_events_query_by_range_kind_limit_and_auction(
    backend: Backend, events: AuctionEventStore
) -> None:
    now = int(backend.clock.now)
    await events.insert_events(
        [
            bid("e-1", now - 300),
            AuctionEvent("o-1", "a-1", now - 200, EventKind.LOT_OPENED, lot_id="lot-2"),
            bid("e-2", now - 100),
            bid("x-1", now - 100, auction="a-2"),
        ]
    )
    in_range = await events.query_events(AnalyticsRange("a-1", now - 300, now - 100))
    assert [e.event_id for e in in_range] == ["e-1", "o-1"]  # start inclusive, end exclusive
    bids_only = await events.query_events(AnalyticsRange("a-1", None, None), (EventKind.BID_PLACED,))
    assert [e.event_id for e in bids_only] == ["e-1", "e-2"]
    assert [e.event_id for e in await events.query_events(AnalyticsRange("a-1", None, None), (), 2)] == [
        "e-1",
        "o-1",
    ]
    assert [e.event_id for e in await events.query_events(AnalyticsRange("a-2", None, None))] == ["x-1"]


async def test_events_older_than_retention_expire(backend: Backend, events: AuctionEventStore) -> None:
    now = backend.clock.now
    await events.insert_events([bid("old", now - (RETENTION_DAYS + 1) * DAY), bid("recent", now - 60)])
    await events.purge_expired()

    async def expired() -> bool:
        return len(await events.query_events(AnalyticsRange("a-1", None, None))) <= 1

    # MongoDB's TTL monitor works on its own clock; the bounded wait turns "never expired" into a failure.
    await poll(expired, "the old event to expire", within=90 if backend.name == "mongodb" else 15, every=0.2)
    assert [e.event_id for e in await events.query_events(AnalyticsRange("a-1", None, None))] == ["recent"]


def fields(e: AuctionEvent) -> tuple[object, ...]:
    return (e.event_id, e.kind, e.lot_id, e.title, e.outcome, e.amount, e.currency, e.bidder_id, e.channel)


def cpc_of(names: range, prefix: str) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for number in names:
        sketch.update(f"{prefix}{number}")
    return bytes(sketch.serialize())


async def test_snapshot_samples_and_sketches_are_stored_and_old_snapshots_read_without_them(
    backend: Backend, events: AuctionEventStore
) -> None:
    minute = int(backend.clock.now) // 60 * 60 - 600
    samples = (3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5, 4)
    identified, anonymous = cpc_of(range(10), "sub-"), cpc_of(range(5), "anon-")
    with_details = make_snapshot(
        "a-1",
        minute,
        samples=samples,
        identified_sketch=identified,
        anonymous_sketch=anonymous,
        avg_viewers=6.0,
    )
    without = make_snapshot("a-1", minute + 60)
    await backend.store.insert_snapshots([with_details, without])

    details = await events.snapshot_details(AnalyticsRange("a-1", None, None))
    assert [d.minute_start for d in details] == [minute, minute + 60]
    assert details[0].samples == samples
    assert details[0].identified_sketch == identified
    assert details[0].anonymous_sketch == anonymous
    assert (details[1].samples, details[1].identified_sketch, details[1].anonymous_sketch) == ((), b"", b"")
    assert (details[1].viewer_count, details[1].peak_viewers, details[1].min_viewers) == (5, 9, 3)
    # The aggregates the existing queries read are unchanged by the new fields.
    totals = await backend.store.query_totals(AnalyticsRange("a-1", None, None))
    assert (totals.snapshot_count, totals.peak_viewers) == (2, 9)
    assert await events.snapshot_details(AnalyticsRange("a-1", minute + 60, None)) == details[1:]


async def test_events_page_after_a_position_in_time_then_id_order(
    backend: Backend, events: AuctionEventStore
) -> None:
    at = int(backend.clock.now) - 100.5
    # Three events share a moment: the id orders them, so a page may end between them.
    await events.insert_events([bid("e-3", at), bid("e-1", at), bid("e-2", at), bid("e-0", at + 1)])
    everything = AnalyticsRange("a-1", None, None)
    first = await events.query_events(everything, (), 2)
    assert [e.event_id for e in first] == ["e-1", "e-2"]
    last = first[-1]
    rest = await events.query_events(everything, (), 2, (last.occurred_at, last.event_id))
    assert [e.event_id for e in rest] == ["e-3", "e-0"]
    assert await events.query_events(everything, (), 2, (rest[-1].occurred_at, rest[-1].event_id)) == []
