"""Two ingest replicas on one store, as real processes: they agree on every flag and store each minute once.

On MongoDB (SecantusDB, and ``TEST_MONGODB_URI`` when set) the replicas share a database; on SQLite
they share a file on one host (WAL mode, every write in a transaction holding the file's write lock).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from service_common.grpc_tls import open_channel
from tests.conftest import real_mongodb_uri
from tests.fault_support import ServiceProcess, base_env, service
from tests.integration.test_ingest_queries import query
from tests.support import IngestClient, make_snapshot, outcome_names

BACKENDS = ["sqlite", "secantusdb"] + (["mongodb"] if real_mongodb_uri() else [])
MINUTE = 60


@asynccontextmanager
async def replica(env: dict[str, str]) -> AsyncIterator[IngestClient]:
    """``python -m ingest_service`` on a free port, with a client on a channel to it."""
    async with service("ingest_service", env) as process:
        listening = await process.log_entry("Ingest service listening")
        channel = open_channel(f"127.0.0.1:{listening['port']}", None)
        try:
            yield IngestClient(channel)
        finally:
            await channel.close()


@pytest.fixture(params=BACKENDS)
async def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment that points an ingest process at the shared store."""
    if request.param == "sqlite":
        yield {"ANALYTICS_SQLITE_PATH": str(tmp_path / "shared.sqlite3")}
        return
    server = request.getfixturevalue("secantus_uri") if request.param == "secantusdb" else real_mongodb_uri()
    assert server is not None
    database = f"replicas_{secrets.token_hex(6)}"
    yield {"MONGODB_URI": server.rstrip("/") + "/" + database}
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server)
    await client.drop_database(database)
    await client.close()


@asynccontextmanager
async def two_replicas(store_env: dict[str, str]) -> AsyncIterator[tuple[IngestClient, IngestClient]]:
    env = base_env(INGEST_PORT="0", SNAPSHOT_INTERVAL_SECONDS="60", SAMPLE_INTERVAL_SECONDS="5", **store_env)
    async with AsyncExitStack() as stack:
        # Started one after the other: two processes creating one SQLite file's schema at the same
        # instant is a different test (test_replicas_opening_one_file_at_once_both_start).
        a = await stack.enter_async_context(replica(env))
        b = await stack.enter_async_context(replica(env))
        yield a, b


async def test_a_flag_change_through_one_replica_governs_the_other_at_once(store_env: dict[str, str]) -> None:
    auction = str(ObjectId())
    now = int(time.time())
    past = now // MINUTE * MINUTE - 30 * MINUTE
    # The first minute that starts after the changes below (accepted: at most two intervals ahead).
    upcoming = (now // MINUTE + 1) * MINUTE
    async with two_replicas(store_env) as (a, b):
        # Replica A has decided on this auction before (a replica that caches would keep its answer).
        assert outcome_names(await a.send([make_snapshot(auction, past)])) == ["SKIPPED_ANALYTICS_DISABLED"]

        await b.set_analytics(auction, True)
        # The first batch A receives after B's acknowledgement obeys the change: a minute that starts
        # after it, and an older minute that arrives after it.
        on = await a.send([make_snapshot(auction, upcoming), make_snapshot(auction, past + MINUTE)])
        assert outcome_names(on) == ["STORED", "STORED"]

        await b.set_analytics(auction, False)
        off = await a.send(
            [make_snapshot(auction, upcoming + MINUTE), make_snapshot(auction, past + 2 * MINUTE)]
        )
        assert outcome_names(off) == ["SKIPPED_ANALYTICS_DISABLED", "SKIPPED_ANALYTICS_DISABLED"]

        # And the other way round.
        await a.set_analytics(auction, True)
        assert outcome_names(await b.send([make_snapshot(auction, upcoming + MINUTE)])) == ["STORED"]

        # Both replicas see the same history.
        for replica_client in (a, b):
            summary = (await query(replica_client, auction)).summary
            assert summary.snapshot_count == 3


async def test_replicas_store_each_minute_once_and_agree_on_every_aggregate(
    store_env: dict[str, str],
) -> None:
    auction = str(ObjectId())
    hour = int(time.time()) // 3600 * 3600 - 2 * 3600
    snapshots = [make_snapshot(auction, hour + MINUTE * m, peak_viewers=9 + m % 7) for m in range(60)]
    async with two_replicas(store_env) as (a, b):
        await a.set_analytics(auction, True)
        # Both replicas receive the whole hour at once, in batches that overlap: as after a gateway
        # re-sent what one replica had not acknowledged to the other.
        answers = await asyncio.gather(
            a.send_batches([snapshots[:40], snapshots[40:]]),
            b.send_batches([snapshots[20:], snapshots[:20]]),
        )
        stored: dict[int, list[str]] = {}
        for batches in answers:
            for batch in batches:
                for ack in batch:
                    stored.setdefault(ack.minute_start.seconds, []).extend(outcome_names([ack]))
        assert all(sorted(outcomes) == ["DUPLICATE", "STORED"] for outcomes in stored.values())
        assert len(stored) == 60

        for replica_client in (a, b):
            hourly = (await query(replica_client, auction, 3600)).points
            assert [(p.bucket_start.seconds, p.sample_count, p.peak_viewers) for p in hourly] == [
                (hour, 720, 15)
            ]
            assert (await query(replica_client, auction)).summary.snapshot_count == 60


async def test_replicas_opening_one_file_at_once_both_start(tmp_path: Path) -> None:
    env = base_env(INGEST_PORT="0", ANALYTICS_SQLITE_PATH=str(tmp_path / "fresh.sqlite3"))
    processes = await asyncio.gather(*(ServiceProcess.start("ingest_service", env) for _ in range(2)))
    try:
        for process in processes:
            await process.log_entry("Ingest service listening")
    finally:
        for process in processes:
            await process.kill()
