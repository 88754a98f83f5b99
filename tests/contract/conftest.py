"""One storage backend per parameter: every contract test runs against each SnapshotStore adapter."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from ingest_service.domain import AnalyticsRange, RangeTotals
from ingest_service.storage.mongo_store import MongoSnapshotStore
from ingest_service.storage.port import SnapshotStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from testkit.waiting import poll
from tests.conftest import real_mongodb_uri
from tests.support import FakeClock

RETENTION_DAYS = 90


@dataclass
class Backend:
    """A store under test plus the backend-specific ways to observe it."""

    name: str
    store: SnapshotStore
    clock: FakeClock
    # Lets the backend remove what is older than the retention, returning when the given auction's
    # expired snapshots are gone: SQLite purges on its own clock, MongoDB's TTL monitor runs on
    # the server's real clock (the wait is bounded; running out fails the test).
    expire: Callable[[str], Awaitable[None]]
    reopen: Callable[[int], Awaitable[SnapshotStore]]

    async def count(self, auction_id: str) -> int:
        return (await self.store.query_totals(AnalyticsRange(auction_id, None, None))).snapshot_count


def _mongo_uris(secantus_uri: str) -> list[tuple[str, str]]:
    uris = [("secantusdb", secantus_uri)]
    real = real_mongodb_uri()
    if real:
        uris.append(("mongodb", real))
    return uris


BACKEND_NAMES = ["sqlite", "secantusdb"] + (["mongodb"] if real_mongodb_uri() else [])


@pytest.fixture(params=BACKEND_NAMES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backend]:
    name: str = request.param
    opened: list[SnapshotStore] = []

    if name == "sqlite":
        path = str(tmp_path / "contract.sqlite3")

        async def open_sqlite(retention_days: int) -> SnapshotStore:
            store = await SqliteSnapshotStore.open(path, retention_days=retention_days, clock=clock)
            opened.append(store)
            return store

        store = await open_sqlite(RETENTION_DAYS)

        async def expire_sqlite(_auction_id: str) -> None:
            assert isinstance(store, SqliteSnapshotStore)
            await store.purge_expired()

        yield Backend(name, store, clock, expire_sqlite, open_sqlite)
    else:
        server_uri = dict(_mongo_uris(request.getfixturevalue("secantus_uri")))[name]
        # A database per test keeps tests independent without dropping anything shared.
        database = f"contract_{secrets.token_hex(6)}"
        uri = server_uri.rstrip("/") + "/" + database

        async def open_mongo(retention_days: int) -> SnapshotStore:
            mongo_store = await MongoSnapshotStore.open(uri, retention_days=retention_days, clock=clock)
            opened.append(mongo_store)
            # On a fresh database the one-time rollup build finds nothing; waiting for it makes every
            # whole-hours query below read the rollups, which is what the contract must hold them to.
            async with asyncio.timeout(15):
                await mongo_store.rollups_complete.wait()
                await mongo_store.sketch_rollups_complete.wait()
            return mongo_store

        store = await open_mongo(RETENTION_DAYS)

        async def expire_mongo(auction_id: str) -> None:
            # mongod's TTL monitor wakes every 60 s; the test server's sweeps every second.
            async def expired() -> bool:
                return await store.query_totals(AnalyticsRange(auction_id, None, None)) == RangeTotals.empty()

            # The TTL monitor signals nothing, so poll; the bound turns "never expired" into a failure.
            await poll(
                expired,
                f"{auction_id}'s snapshots to expire",
                within=90.0 if name == "mongodb" else 15.0,
                every=0.2,
            )

        yield Backend(name, store, clock, expire_mongo, open_mongo)
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server_uri)
        await client.drop_database(database)
        await client.close()

    for each in opened:
        await each.close()
