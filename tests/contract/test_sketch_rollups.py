"""The hourly sketch rollups behind unique viewers, per backend: read for whole hours, built for
sketches stored before them, and merged right by writers racing for one hour (MongoDB)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from ingest_service.domain import AnalyticsRange
from ingest_service.storage.mongo_sketch_rollups import SKETCH_COLLECTION, SKETCHES_BUILT_MARKER
from ingest_service.storage.mongo_store import MongoSnapshotStore
from ingest_service.storage.port import SNAPSHOT_COLLECTION
from ingest_service.storage.sketch_rollups import SQLITE_TABLE
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from tests.contract.conftest import _mongo_uris
from tests.contract.test_unique_viewers_contract import HOUR, cpc, oracle, sketched
from tests.support import FakeClock

Document = dict[str, object]
BIG = cpc(range(50_000), "hand-")


def two_hours(clock: FakeClock, auction_id: str) -> tuple[int, list]:  # type: ignore[type-arg]
    hour = int(clock.now) // HOUR * HOUR - 3 * HOUR
    return hour, [sketched(auction_id, hour + 60 * index, index + 1) for index in range(120)]


async def test_sqlite_whole_hours_are_read_from_the_rollups(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "store.sqlite3")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    try:
        hour, snapshots = two_hours(clock, "a-1")
        await store.insert_snapshots(snapshots)
        with sqlite3.connect(path) as connection:
            assert connection.execute(f"SELECT COUNT(*) FROM {SQLITE_TABLE}").fetchone() == (2,)
            connection.execute(
                f"UPDATE {SQLITE_TABLE} SET identified_sketch = ? WHERE hour_start = ?", (BIG, hour)
            )
        # Changed by hand, the first hour's rollup shows in a range holding that whole hour...
        whole = await store.query_unique_viewers(AnalyticsRange("a-1", hour, hour + HOUR))
        assert whole.identified_estimate == pytest.approx(50_000, rel=0.05)
        # ...and not in one that holds only part of it, read from the minutes.
        part = await store.query_unique_viewers(AnalyticsRange("a-1", hour + 60, hour + HOUR))
        assert part == oracle(snapshots, hour + 60, hour + HOUR)
    finally:
        await store.close()


async def test_sqlite_a_file_without_the_rollups_gains_them_on_open(tmp_path: Path, clock: FakeClock) -> None:
    """A file written by the version that stored sketches but kept no hourly rollups of them."""
    path = str(tmp_path / "store.sqlite3")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    _, snapshots = two_hours(clock, "a-1")
    await store.insert_snapshots(snapshots)
    await store.close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"DROP TABLE {SQLITE_TABLE}")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    try:
        with sqlite3.connect(path) as connection:
            assert connection.execute(f"SELECT SUM(sketched_snapshots) FROM {SQLITE_TABLE}").fetchone() == (
                sum(1 for s in snapshots if s.identified_sketch or s.anonymous_sketch),
            )
        everything = AnalyticsRange("a-1", None, None)
        assert await store.query_unique_viewers(everything) == oracle(snapshots, None, None)
    finally:
        await store.close()


@pytest.fixture(params=[name for name, _ in _mongo_uris("")])
async def database_uri(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    server_uri = dict(_mongo_uris(request.getfixturevalue("secantus_uri")))[request.param]
    name = f"sketches_{secrets.token_hex(6)}"
    yield server_uri.rstrip("/") + "/" + name
    client: AsyncMongoClient[Document] = AsyncMongoClient(server_uri)
    await client.drop_database(name)
    await client.close()


async def open_mongo(uri: str, clock: FakeClock) -> MongoSnapshotStore:
    store = await MongoSnapshotStore.open(uri, retention_days=90, clock=clock)
    async with asyncio.timeout(15):
        await store.rollups_complete.wait()
        await store.sketch_rollups_complete.wait()
    return store


async def test_mongo_whole_hours_are_read_from_the_rollups(database_uri: str, clock: FakeClock) -> None:
    store = await open_mongo(database_uri, clock)
    client: AsyncMongoClient[Document] = AsyncMongoClient(database_uri)
    try:
        hour, snapshots = two_hours(clock, "a-1")
        await store.insert_snapshots(snapshots)
        rollups = client.get_default_database()[SKETCH_COLLECTION]
        changed = await rollups.update_one(
            {"auction": "a-1", "hour": datetime.fromtimestamp(hour, UTC)}, {"$set": {"identified": BIG}}
        )
        assert changed.matched_count == 1
        whole = await store.query_unique_viewers(AnalyticsRange("a-1", hour, hour + HOUR))
        assert whole.identified_estimate == pytest.approx(50_000, rel=0.05)
        part = await store.query_unique_viewers(AnalyticsRange("a-1", hour + 60, hour + HOUR))
        assert part == oracle(snapshots, hour + 60, hour + HOUR)
    finally:
        await client.close()
        await store.close()


async def test_mongo_two_writers_racing_for_one_hour_both_count(database_uri: str, clock: FakeClock) -> None:
    """Two replicas write different minutes of the same hours at once: every minute is merged once."""
    first, second = await open_mongo(database_uri, clock), await open_mongo(database_uri, clock)
    try:
        _, snapshots = two_hours(clock, "a-1")
        evens, odds = snapshots[0::2], snapshots[1::2]
        for at in range(0, len(evens), 10):
            await asyncio.gather(
                first.insert_snapshots(evens[at : at + 10]), second.insert_snapshots(odds[at : at + 10])
            )
        everything = AnalyticsRange("a-1", None, None)
        assert await first.query_unique_viewers(everything) == oracle(snapshots, None, None)
    finally:
        await first.close()
        await second.close()


async def test_mongo_sketches_stored_before_the_rollups_are_rolled_up(
    database_uri: str, clock: FakeClock
) -> None:
    store = await open_mongo(database_uri, clock)
    client: AsyncMongoClient[Document] = AsyncMongoClient(database_uri)
    database = client.get_default_database()
    try:
        _, snapshots = two_hours(clock, "a-1")
        await store.insert_snapshots(snapshots)
        await store.close()
        # As the version that stored sketches without their hourly rollups left the database.
        await database[SKETCH_COLLECTION].drop()
        await database["vieweranalyticsmeta"].delete_one({"_id": SKETCHES_BUILT_MARKER})
        assert await database[SNAPSHOT_COLLECTION].count_documents({}) == 120
        store = await open_mongo(database_uri, clock)
        assert await database[SKETCH_COLLECTION].count_documents({"auction": "a-1"}) == 2
        everything = AnalyticsRange("a-1", None, None)
        assert await store.query_unique_viewers(everything) == oracle(snapshots, None, None)
    finally:
        await client.close()
        await store.close()
