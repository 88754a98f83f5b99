"""What only the MongoDB adapter has: its indexes, a TTL that follows the setting, connection loss."""

from __future__ import annotations

import asyncio
import gc
import secrets
import socket
import warnings
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from ingest_service import audience
from ingest_service.config import MongoSettings
from ingest_service.domain import AnalyticsRange, Snapshot, SnapshotOutcome, StorageUnavailable
from ingest_service.storage.event_port import LOT_COLLECTION
from ingest_service.storage.mongo_events import LOT_KEY_INDEX, LOT_TTL_INDEX, MongoAuctionEventStore
from ingest_service.storage.mongo_rollups import HOURLY_COLLECTION, HOURLY_TTL_INDEX, HOURLY_UNIQUE_INDEX
from ingest_service.storage.mongo_store import TTL_INDEX, UNIQUE_INDEX, MongoSnapshotStore
from ingest_service.storage.port import SNAPSHOT_COLLECTION
from testkit.waiting import poll
from tests.conftest import real_mongodb_uri
from tests.contract.conftest import _mongo_uris
from tests.contract.test_lot_facts_contract import lots
from tests.contract.test_snapshot_store_contract import expected_points
from tests.support import FakeClock, make_snapshot

Document = dict[str, object]


@pytest.fixture(params=[name for name, _ in _mongo_uris("")])
async def database_uri(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    server_uri = dict(_mongo_uris(request.getfixturevalue("secantus_uri")))[request.param]
    name = f"mongo_{secrets.token_hex(6)}"
    yield server_uri.rstrip("/") + "/" + name
    client: AsyncMongoClient[Document] = AsyncMongoClient(server_uri)
    await client.drop_database(name)
    await client.close()


async def index_information(uri: str, collection: str = SNAPSHOT_COLLECTION) -> MutableMapping[str, Any]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri)
    try:
        return await client.get_default_database()[collection].index_information()
    finally:
        await client.close()


async def test_indexes_are_unique_key_and_ttl_from_retention(database_uri: str) -> None:
    store = await MongoSnapshotStore.open(database_uri, retention_days=90)
    await store.close()
    indexes = await index_information(database_uri)
    assert indexes[UNIQUE_INDEX]["key"] == [("auction", 1), ("timestamp", 1)]
    assert indexes[UNIQUE_INDEX]["unique"] is True
    assert indexes[TTL_INDEX]["key"] == [("timestamp", 1)]
    assert indexes[TTL_INDEX]["expireAfterSeconds"] == 90 * 86_400
    hourly = await index_information(database_uri, HOURLY_COLLECTION)
    assert hourly[HOURLY_UNIQUE_INDEX]["key"] == [("auction", 1), ("hour", 1)]
    assert hourly[HOURLY_UNIQUE_INDEX]["unique"] is True
    assert hourly[HOURLY_TTL_INDEX]["key"] == [("lastMinuteAt", 1)]
    assert hourly[HOURLY_TTL_INDEX]["expireAfterSeconds"] == 90 * 86_400


async def test_changed_retention_changes_the_existing_ttl_index(database_uri: str) -> None:
    await (await MongoSnapshotStore.open(database_uri, retention_days=90)).close()
    await (await MongoSnapshotStore.open(database_uri, retention_days=30)).close()
    assert (await index_information(database_uri))[TTL_INDEX]["expireAfterSeconds"] == 30 * 86_400
    hourly = await index_information(database_uri, HOURLY_COLLECTION)
    assert hourly[HOURLY_TTL_INDEX]["expireAfterSeconds"] == 30 * 86_400
    # Opening again with the same setting changes nothing and does not fail.
    await (await MongoSnapshotStore.open(database_uri, retention_days=30)).close()
    assert (await index_information(database_uri))[TTL_INDEX]["expireAfterSeconds"] == 30 * 86_400


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_server_is_reported_unavailable() -> None:
    uri = f"mongodb://127.0.0.1:{closed_loopback_port()}/nothing"
    with pytest.raises(StorageUnavailable):
        await MongoSnapshotStore.open(uri, retention_days=90, server_selection_timeout_ms=200)
    # PyMongo 4.20's async monitor leaks the socket of a connect attempt that close() cancels
    # (pool_shared._async_create_connection closes it only on OSError/TimeoutError). Collect it
    # here, where the cause is known, instead of letting its ResourceWarning fail a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def open_store(uri: str, **options: Any) -> MongoSnapshotStore:
    """The store on ``uri``, once its rollups are complete (queries of whole hours then read them)."""
    store = await MongoSnapshotStore.open(uri, retention_days=90, **options)
    async with asyncio.timeout(15):
        await store.rollups_complete.wait()
    return store


async def raw_database(uri: str) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri, tz_aware=True)
    return client, client.get_default_database()


def two_hours(clock: FakeClock, auction: str) -> tuple[int, list[Snapshot]]:
    hour = int(clock.now) // 3600 * 3600 - 3 * 3600
    return hour, [
        make_snapshot(auction, hour + 60 * m, peak_viewers=9 + m % 11, viewer_count=5 + m % 3)
        for m in range(120)
    ]


async def test_whole_hours_are_answered_from_the_rollups(database_uri: str, clock: FakeClock) -> None:
    store = await open_store(database_uri, clock=clock)
    client, db = await raw_database(database_uri)
    try:
        hour, snapshots = two_hours(clock, "rolled")
        await store.insert_snapshots(snapshots)
        # Changed by hand, the first hour's rollup shows in what whole-hours queries answer, and
        # the minutes still answer the rest: the rollups are what those queries read.
        changed = await db[HOURLY_COLLECTION].update_one(
            {"auction": "rolled", "hour": datetime.fromtimestamp(hour, UTC)}, {"$set": {"peak": 999}}
        )
        assert changed.matched_count == 1
        everything = AnalyticsRange("rolled", None, None)
        assert [p.peak_viewers for p in await store.query_points(everything, 3600)] == [999, 19]
        assert (await store.query_totals(everything)).peak_viewers == 999
        assert max(p.peak_viewers for p in await store.query_points(everything, 300)) == 19
        # A range that starts inside the first hour reads that hour's part from the minutes.
        part = AnalyticsRange("rolled", hour + 1800, None)
        assert [p.peak_viewers for p in await store.query_points(part, 3600)] == [19, 19]
    finally:
        await client.close()
        await store.close()


@pytest.mark.parametrize("one_request_per_batch", [True, False], ids=["one-bulkWrite", "two-bulk-writes"])
async def test_rollups_hold_each_minute_once_under_resends_and_duplicates(
    database_uri: str, clock: FakeClock, one_request_per_batch: bool
) -> None:
    store = await open_store(database_uri, clock=clock, one_request_per_batch=one_request_per_batch)
    client, db = await raw_database(database_uri)
    try:
        hour, snapshots = two_hours(clock, str(ObjectId()))
        first = snapshots[:90] + snapshots[:10]  # repeated inside the batch
        assert (await store.insert_snapshots(first)).count(SnapshotOutcome.DUPLICATE) == 10
        # Re-sent, re-sent with other values (the first write wins), and the rest.
        await store.insert_snapshots(snapshots[:90])
        await store.insert_snapshots(
            [replace(s, peak_viewers=500, viewer_count=100) for s in snapshots[30:60]]
        )
        await store.insert_snapshots(snapshots[60:])

        everything = AnalyticsRange(snapshots[0].auction_id, None, None)
        expected = expected_points(snapshots, None, None, 3600)
        assert await store.query_points(everything, 3600) == expected
        rollups = await db[HOURLY_COLLECTION].find({}, {"m": 0, "_id": 0}).sort("hour", 1).to_list()
        assert [(r["count"], r["samples"], r["peak"], r["first"], r["last"]) for r in rollups] == [
            (60, 720, 19, hour, hour + 3540),
            (60, 720, 19, hour + 3600, hour + 7140),
        ]
        assert isinstance(rollups[0]["auction"], ObjectId)
    finally:
        await client.close()
        await store.close()


async def test_rollups_expire_with_their_minutes(database_uri: str, clock: FakeClock) -> None:
    store = await open_store(database_uri, clock=clock)
    client, db = await raw_database(database_uri)
    try:
        now = int(clock.now) // 60 * 60
        # A rollup carries its hour's last minute as the date its TTL index expires it by, with the
        # minutes' own retention. (Checked on "new": the old rollup may already be swept by the time it
        # could be read, as SecantusDB sweeps every second.)
        await store.insert_snapshots([make_snapshot("new", now - 60)])
        (fresh,) = await db[HOURLY_COLLECTION].find({"auction": "new"}).to_list()
        assert fresh["lastMinuteAt"] == datetime.fromtimestamp(now - 60, UTC)
        minute_ttl = (await db[SNAPSHOT_COLLECTION].index_information())[TTL_INDEX]
        rollup_ttl = (await db[HOURLY_COLLECTION].index_information())[HOURLY_TTL_INDEX]
        assert rollup_ttl["key"] == [("lastMinuteAt", 1)]
        assert rollup_ttl["expireAfterSeconds"] == minute_ttl["expireAfterSeconds"]
        await store.insert_snapshots([make_snapshot("old", now - 91 * 86_400 + 60 * m) for m in range(3)])
        # SecantusDB's TTL monitor sweeps every second here (mongod's every 60 s); the bound turns
        # "never expired" into a failure.

        async def rollups_expired() -> bool:
            return await db[HOURLY_COLLECTION].count_documents({"auction": "old"}) == 0

        await poll(
            rollups_expired, "the old rollups to expire", within=90 if real_mongodb_uri() else 15, every=0.2
        )
        assert await db[SNAPSHOT_COLLECTION].count_documents({"auction": "old"}) == 0
        assert await db[HOURLY_COLLECTION].count_documents({"auction": "new"}) == 1
    finally:
        await client.close()
        await store.close()


async def test_rollups_are_built_for_minutes_stored_before_them(database_uri: str, clock: FakeClock) -> None:
    client, db = await raw_database(database_uri)
    try:
        _, snapshots = two_hours(clock, "earlier")
        # As the seed's backend or a version without MongoDB rollups left them.
        await db[SNAPSHOT_COLLECTION].insert_many(
            [
                {
                    "auction": s.auction_id,
                    "timestamp": datetime.fromtimestamp(s.minute_start, UTC),
                    "viewerCount": s.viewer_count,
                    "avgViewers": s.avg_viewers,
                    "peakViewers": s.peak_viewers,
                    "minViewers": s.min_viewers,
                    "sampleCount": s.sample_count,
                }
                for s in snapshots
            ]
            # One written by some other program without its counts: left out, and the build finishes.
            + [
                {
                    "auction": "partial-doc",
                    "timestamp": datetime.fromtimestamp(snapshots[0].minute_start, UTC),
                }
            ]
        )
        store = await open_store(database_uri, clock=clock)
        try:
            assert await db[HOURLY_COLLECTION].count_documents({"auction": "earlier"}) == 2
            everything = AnalyticsRange("earlier", None, None)
            assert await store.query_points(everything, 3600) == expected_points(snapshots, None, None, 3600)
            assert (await store.query_totals(everything)).snapshot_count == 120
        finally:
            await store.close()
        # Built once: the next start finds the marker and does not read every minute again.
        again = await MongoSnapshotStore.open(database_uri, retention_days=90, clock=clock)
        assert again.rollups_complete.is_set()
        await again.close()
    finally:
        await client.close()


async def test_the_write_concern_reaches_the_server(database_uri: str, clock: FakeClock) -> None:
    # The test servers have one data-bearing member: w=2 cannot be satisfied, majority can.
    unsatisfiable = await MongoSnapshotStore.open(
        database_uri, retention_days=90, clock=clock, settings=MongoSettings(write_concern=2)
    )
    try:
        with pytest.raises(StorageUnavailable):
            await unsatisfiable.insert_snapshots([make_snapshot("wc", int(clock.now) - 60)])
    finally:
        await unsatisfiable.close()
    majority = await open_store(database_uri, clock=clock, settings=MongoSettings(write_concern="majority"))
    try:
        outcomes = await majority.insert_snapshots([make_snapshot("wc", int(clock.now) - 120)])
        assert outcomes == [SnapshotOutcome.STORED]
    finally:
        await majority.close()


async def test_the_read_preference_applies_to_queries_and_never_to_flags(
    database_uri: str, clock: FakeClock
) -> None:
    store = await open_store(
        database_uri,
        clock=clock,
        settings=MongoSettings(read_preference="secondary"),
        server_selection_timeout_ms=300,
    )
    try:
        # No secondary exists here: queries cannot be answered, while the flags, read from the
        # primary, still decide every batch.
        await store.set_viewer_analytics("rp", True, clock.now)
        assert (await store.get_settings(["rp"]))["rp"].enable_viewer_analytics
        assert await store.insert_snapshots([make_snapshot("rp", int(clock.now) - 60)]) == [
            SnapshotOutcome.STORED
        ]
        with pytest.raises(StorageUnavailable):
            await store.query_totals(AnalyticsRange("rp", None, None))
    finally:
        await store.close()


async def test_writes_are_retried_even_when_the_uri_turns_retries_off(
    database_uri: str, clock: FakeClock
) -> None:
    store = await open_store(database_uri + "?retryWrites=false", clock=clock)
    admin: AsyncMongoClient[Document] = AsyncMongoClient(database_uri)
    try:
        # The next write fails with a retryable error (SocketException, as when a connection drops
        # during a failover); the driver retries it once.
        await admin.admin.command(
            "configureFailPoint",
            "failCommand",
            mode={"times": 1},
            data={"failCommands": ["insert", "bulkWrite"], "errorCode": 9001},
        )
        assert await store.insert_snapshots([make_snapshot("retried", int(clock.now) - 60)]) == [
            SnapshotOutcome.STORED
        ]
    finally:
        await admin.admin.command("configureFailPoint", "failCommand", mode="off")
        await admin.close()
        await store.close()


async def test_events_stored_before_the_kept_lots_gain_them_on_open(
    database_uri: str, clock: FakeClock
) -> None:
    """A database whose events were written by a version that kept no lots: computed once on open."""
    written = sorted(lots(int(clock.now) - 3600), key=lambda e: (e.occurred_at, e.event_id))
    store = await MongoSnapshotStore.open(database_uri, retention_days=90, clock=clock)
    try:
        events = await MongoAuctionEventStore.open(store, retention_days=90, clock=clock)
        await events.insert_events(written)
        indexes = await index_information(database_uri, LOT_COLLECTION)
        assert indexes[LOT_KEY_INDEX]["unique"] is True
        assert indexes[LOT_TTL_INDEX]["expireAfterSeconds"] == 90 * 86_400
        await store.database.drop_collection(LOT_COLLECTION)
        reopened = await MongoAuctionEventStore.open(store, retention_days=90, clock=clock)
        assert await reopened.lot_facts("a-1", None) == audience.lot_facts(written)
    finally:
        await store.close()
