"""Fixtures shared by every test: storage backends and a running ingest service."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from secantus import SecantusDBServer

from ingest_service.config import IngestConfig
from ingest_service.domain import AnalyticsRange
from ingest_service.server import WRITE_CHECK_INTERVAL_SECONDS, IngestServer, create_ingest_server
from ingest_service.storage.sqlite_events import SqliteAuctionEventStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.grpc_tls import ClientTls, open_channel
from service_common.supervision import Supervisor
from service_common.timing import SnapshotTiming
from tests.support import ROTATED_KEY, TEST_KEY, FakeClock, IngestClient

if TYPE_CHECKING:
    # Imported where used: tests.redis_support imports this module.
    from tests.redis_support import RedisClusterServers

pytest_plugins = ["tests.hang_report", "tests.worker_count"]


def pytest_configure(config: pytest.Config) -> None:
    """Service processes the tests start read no ``.env``: a developer's file (a MONGODB_URI, say)
    would otherwise fill in what a test leaves unset. ``test_service_help`` tests the file itself."""
    os.environ.setdefault("ENV_FILE", os.devnull)


@pytest.fixture(scope="session")
def secantus_uri() -> Iterator[str]:
    """A SecantusDB server (MongoDB wire protocol, WiredTiger inside) on a free loopback port.

    Not mongod: where it differs from MongoDB's documented behaviour, the tests follow MongoDB's
    documentation. Its TTL monitor sweeps every second (mongod's default is 60 s).
    """
    with tempfile.TemporaryDirectory(prefix="secantus-") as storage:
        server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=storage, ttl_sweep_seconds=1.0)
        server.start()
        try:
            yield server.uri
        finally:
            server.stop()


def real_mongodb_uri() -> str | None:
    """``TEST_MONGODB_URI``: a real MongoDB to run the MongoDB tests against as well, when set."""
    return os.environ.get("TEST_MONGODB_URI") or None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class RunningIngest:
    server: IngestServer
    store: SqliteSnapshotStore
    config: IngestConfig
    clock: FakeClock
    channel: grpc.aio.Channel

    def client(self, key: str | None = TEST_KEY) -> IngestClient:
        return IngestClient(self.channel, key)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def stored_count(self, auction_id: str) -> int:
        """Snapshots stored for the auction, read from the store itself rather than through the API."""
        return (await self.store.query_totals(AnalyticsRange(auction_id, None, None))).snapshot_count


def ingest_config(**overrides: object) -> IngestConfig:
    settings: dict[str, object] = {
        "internal_api_keys": (TEST_KEY, ROTATED_KEY),
        "host": "127.0.0.1",
        "port": 0,
        "timing": SnapshotTiming(60, 5),
        "shutdown_grace_seconds": 5.0,
    }
    settings.update(overrides)
    return IngestConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def ingest(tmp_path: Path, clock: FakeClock) -> AsyncIterator[RunningIngest]:
    """The ingest service on SQLite, on a free loopback port, with a channel to it."""
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"))
    async with serving_ingest(config, clock) as running:
        yield running


@asynccontextmanager
async def sqlite_ingest(
    config: IngestConfig,
    clock: Callable[[], float] = time.time,
    supervisor: Supervisor | None = None,
    write_check_interval_seconds: float = WRITE_CHECK_INTERVAL_SECONDS,
) -> AsyncIterator[tuple[IngestServer, SqliteSnapshotStore]]:
    """``config``'s ingest service serving on its SQLite file (with its event store), as ``main`` builds it.

    ``clock`` is its time (the wall clock for gateways that run as processes in real time);
    ``supervisor`` and ``write_check_interval_seconds`` go to the server (shorter backoffs in tests).
    """
    store = await SqliteSnapshotStore.open(
        config.sqlite_path, retention_days=config.retention_days, clock=clock, busy_timeout_ms=100
    )
    try:
        events = await SqliteAuctionEventStore.open(store, retention_days=config.retention_days, clock=clock)
        try:
            server = create_ingest_server(
                config,
                store,
                clock,
                event_store=events,
                supervisor=supervisor,
                write_check_interval_seconds=write_check_interval_seconds,
            )
            await server.start()
            try:
                yield server, store
            finally:
                await server.stop(0)
        finally:
            await events.close()
    finally:
        await store.close()


@asynccontextmanager
async def serving_ingest(
    config: IngestConfig,
    clock: FakeClock,
    client_tls: ClientTls | None = None,
    supervisor: Supervisor | None = None,
    write_check_interval_seconds: float = WRITE_CHECK_INTERVAL_SECONDS,
) -> AsyncIterator[RunningIngest]:
    """:func:`sqlite_ingest` on a test's clock, with a channel to it (TLS trusting ``client_tls``)."""
    async with sqlite_ingest(config, clock, supervisor, write_check_interval_seconds) as (server, store):
        channel = open_channel(f"127.0.0.1:{server.port}", client_tls)
        try:
            yield RunningIngest(server, store, config, clock, channel)
        finally:
            await channel.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """One real 3-master Redis Cluster for the whole test process (starting one costs ~3 s); tests
    flush it (``tests.redis_support.redis_backend``)."""
    from tests.redis_support import RedisClusterServers as Servers
    from tests.redis_support import redis_server_binary

    cluster = Servers(redis_server_binary(), tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
