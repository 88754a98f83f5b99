"""Delivery to the real ingest service: outages, the partial minute at shutdown, probes and metrics."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import grpc
import pytest

from ingest_service.server import IngestServer, create_ingest_server
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from socket_gateway.metrics import GatewayMetrics, parse_samples
from socket_gateway.snapshots.outbox import Outbox
from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.gateway_support import ManualClock, gateway_config, running_gateway, stored_snapshots, wait_until
from tests.support import TEST_KEY, FakeClock, IngestClient

# An outbox as the gateway's per-field versions wrote it (see tests/unit/test_gateway_outbox.py).
PER_FIELD_OUTBOX = Path(__file__).parent.parent / "fixtures" / "outbox_per_field.sqlite3"
PER_FIELD_T0 = 1_800_000_000


@asynccontextmanager
async def ingest_on(
    store: SqliteSnapshotStore, path: str, clock: FakeClock, port: int
) -> AsyncIterator[IngestServer]:
    server = create_ingest_server(ingest_config(sqlite_path=path, port=port), store, clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


async def test_minutes_queued_while_ingest_is_down_are_all_delivered_once_it_is_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = str(tmp_path / "analytics.sqlite3")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    try:
        async with ingest_on(store, path, clock, 0) as first:
            port = first.port
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await IngestClient(channel, TEST_KEY).set_analytics("a1", True)
        # The ingest service is down from here on.
        config = gateway_config(tmp_path, ingest_target=f"127.0.0.1:{port}")
        async with running_gateway(config, ManualClock(clock)) as gateway:
            await gateway.viewer({"auctionId": "a1"})
            await gateway.step(180)
            assert gateway.gateway.require_outbox().depth == 3
            # The sender's first attempt fails on its own schedule (a refused connection is not
            # instant on a busy machine): waited for, not assumed.
            await wait_until(
                lambda: gateway.gateway.metrics.send_failures_total >= 1, "the sender's first failure"
            )

            async with ingest_on(store, path, clock, port):
                await gateway.delivered()
            metrics = gateway.gateway.metrics
            assert metrics.snapshots_acked["stored"] == 3
            assert metrics.snapshots_acked["duplicate"] == 0
        rows = stored_snapshots(path, "a1")
        start = int(clock.now) - 180
        assert [row["minute_start"] for row in rows] == [start, start + 60, start + 120]
        assert all(row["viewer_count"] == 1 and row["sample_count"] == 12 for row in rows)
    finally:
        await store.close()


async def test_shutdown_sends_the_partial_minute(ingest: RunningIngest, tmp_path: Path) -> None:
    await ingest.client().set_analytics("a1", True)
    config = gateway_config(tmp_path, ingest_target=ingest.target, shutdown_flush_seconds=5.0)
    async with running_gateway(config, ManualClock(ingest.clock)) as gateway:
        await gateway.viewer({"auctionId": "a1", "viewerId": "v1"})
        await gateway.viewer({"auctionId": "a1", "viewerId": "v1"})
        await gateway.step(20)
        # Stopped with both viewers still connected: the last sample must still see them.
        await gateway.stop(close_viewers=False)
        assert gateway.gateway.require_outbox().depth == 0
    (row,) = stored_snapshots(ingest.config.sqlite_path, "a1")
    assert row["partial"] == 1
    assert row["minute_start"] == int(ingest.clock.now) - 20
    # Four ticks (5 s, 10 s, 15 s, 20 s); stopping at the instant of the last tick takes no second
    # sample of that same moment.
    assert (row["sample_count"], row["viewer_count"], row["unique_viewers"]) == (4, 2, 1)


async def test_what_is_not_flushed_by_the_deadline_stays_in_the_outbox(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = gateway_config(tmp_path, shutdown_flush_seconds=0.2)
    async with running_gateway(config, ManualClock(clock)) as gateway:
        await gateway.viewer({"auctionId": "a1"})
        await gateway.step(10)
    outbox = await Outbox.open(config.outbox_path, 10, GatewayMetrics())
    try:
        (entry,) = await outbox.peek(10)
        assert entry.snapshot.partial
        assert entry.snapshot.auction_id == "a1"
    finally:
        await outbox.close()


async def test_probes_and_metrics(ingest: RunningIngest, tmp_path: Path, clock: FakeClock) -> None:
    config = gateway_config(tmp_path, ingest_target=ingest.target, outbox_max_snapshots=1)
    async with running_gateway(config, ManualClock(clock)) as gateway, aiohttp.ClientSession() as http:
        assert (await http.get(f"{gateway.url}/healthz")).status == 200
        ready = await http.get(f"{gateway.url}/readyz")
        assert ready.status == 200, await ready.text()

        await gateway.viewer({"auctionId": "a1"})
        await gateway.viewer({"auctionId": "a2"})
        # Ingest goes away: two rooms close a minute into an outbox capped at one snapshot.
        await ingest.server.stop(0)
        await gateway.step(60)
        ready = await http.get(f"{gateway.url}/readyz")
        assert ready.status == 503
        problems = " ".join((await ready.json())["problems"])
        assert "outbox at its cap" in problems
        assert "ingest service unreachable" in problems
        assert (await http.get(f"{gateway.url}/healthz")).status == 200

        response = await http.get(f"{gateway.url}/metrics")
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = parse_samples(await response.text())
        assert samples["gateway_connections"] == 2
        assert samples["gateway_rooms"] == 2
        assert samples["gateway_outbox_depth"] == 1
        assert samples["gateway_outbox_dropped_total"] == 1
        assert samples["gateway_samples_total"] == 12
        assert samples["gateway_count_messages_total"] >= 2
        assert samples["gateway_send_failures_total"] >= 1
        assert "gateway_last_ack_timestamp_seconds" in samples


@pytest.mark.parametrize("compression", [False, True])
async def test_websocket_compression_is_off_unless_configured(tmp_path: Path, compression: bool) -> None:
    config = gateway_config(tmp_path, websocket_compression=compression)
    async with running_gateway(config) as gateway, aiohttp.ClientSession() as http:
        url = f"{gateway.url}/socket.io/?EIO=4&transport=websocket"
        ws = await http.ws_connect(url, compress=15)
        assert (await ws.receive_str()).startswith("0")
        assert bool(ws.compress) is compression
        await ws.close()


async def test_an_outbox_file_of_the_per_field_version_is_delivered_by_this_one(tmp_path: Path) -> None:
    """A gateway upgraded over a queue it could not deliver yet sends that queue, in order, intact."""
    clock = FakeClock(PER_FIELD_T0 + 600)
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"))
    async with serving_ingest(config, clock) as ingest:
        for auction_id in ("a1", "a2", "a3"):
            await ingest.client().set_analytics(auction_id, True)
        outbox_path = tmp_path / "outbox.sqlite3"
        shutil.copyfile(PER_FIELD_OUTBOX, outbox_path)
        gateway_settings = gateway_config(tmp_path, ingest_target=ingest.target, outbox_path=str(outbox_path))
        async with running_gateway(gateway_settings, ManualClock(clock)) as gateway:
            await gateway.delivered()
            assert gateway.gateway.metrics.snapshots_acked["stored"] == 3
    fields = ("minute_start", "viewer_count", "avg_viewers", "peak_viewers", "min_viewers", "sample_count")
    more = ("unique_viewers", "partial", "gateway_id")
    stored = {
        auction_id: [
            tuple(row[name] for name in (*fields, *more))
            for row in stored_snapshots(config.sqlite_path, auction_id)
        ]
        for auction_id in ("a1", "a2", "a3")
    }
    assert stored == {
        "a1": [(PER_FIELD_T0 + 60, 7, 7.0, 7, 7, 3, 6, 1, "gw-old")],
        "a2": [(PER_FIELD_T0, 2, 1.25, 3, 0, 12, 2, 0, "gw-old")],
        "a3": [(PER_FIELD_T0 + 60, 1, 1.0, 1, 1, 12, 1, 0, "gw-old")],
    }
