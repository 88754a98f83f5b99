"""Helpers for the socket gateway's tests: a clock stepped by hand, a gateway on port 0, viewers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

from service_common.timing import SnapshotTiming
from socket_gateway.app import GATEWAY, Gateway, GatewaySite, create_app
from socket_gateway.config import GatewayConfig
from socket_gateway.snapshots.sender import Backoff
from testkit.waiting import poll
from tests.support import TEST_KEY, FakeClock

ALLOWED_ORIGIN = "http://localhost:3000"
# Tests wait for events, never for time; this only bounds how long a broken test hangs.
WAIT = 10.0


class ManualClock:
    """The gateway's clock on top of the tests' ``FakeClock``: sleepers wake when a test advances it.

    Sharing one ``FakeClock`` with the ingest fixture keeps the gateway's minutes and the ingest
    service's validation on the same time.
    """

    def __init__(self, fake: FakeClock) -> None:
        self.fake = fake
        self._moved = asyncio.Condition()

    def time(self) -> float:
        return self.fake.now

    async def sleep_until(self, moment: float) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self.fake.now >= moment)

    async def advance(self, seconds: float) -> None:
        self.fake.advance(seconds)
        async with self._moved:
            self._moved.notify_all()


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Waits until ``predicate`` holds (state of the gateway in this process, with no event to await)."""
    await poll(predicate, what, within=WAIT, every=0.01)


def gateway_config(tmp_path: Path, **overrides: Any) -> GatewayConfig:
    settings: dict[str, Any] = {
        "internal_api_keys": (TEST_KEY,),
        "ingest_target": "127.0.0.1:1",
        "host": "127.0.0.1",
        "port": 0,
        "grpc_port": 0,
        "allowed_origins": (ALLOWED_ORIGIN,),
        "timing": SnapshotTiming(60, 5),
        "count_update_interval_ms": 100,
        "outbox_path": str(tmp_path / "outbox.sqlite3"),
        "shutdown_flush_seconds": 0.0,
        "gateway_id": "gateway-test",
    }
    settings.update(overrides)
    return GatewayConfig(**settings)


@dataclass
class RunningGateway:
    gateway: Gateway
    runner: web.AppRunner
    port: int
    clock: ManualClock | None
    stopped: bool = False
    viewers: list[Viewer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the gateway's internal gRPC port (LiveCountService), bound at start."""
        live = self.gateway.live_counts
        assert live is not None, "the live count server starts with the app"
        return f"127.0.0.1:{live.port}"

    async def step(self, seconds: int, sample_interval: int = 5) -> None:
        """Advances the manual clock tick by tick, waiting for the sampler to take each sample."""
        assert self.clock is not None
        for _ in range(seconds // sample_interval):
            taken = self.gateway.metrics.samples_total
            await self.clock.advance(sample_interval)
            await asyncio.wait_for(self.gateway.require_sampler().wait_for_samples(taken + 1), WAIT)

    async def delivered(self) -> None:
        """Returns once the outbox is empty: everything queued so far was acknowledged."""
        await asyncio.wait_for(self.gateway.require_outbox().wait_until_empty(), WAIT)

    async def viewer(self, auth: dict[str, Any] | None = None, **options: Any) -> Viewer:
        """A connected viewer, closed (as a browser closes its tab) when the gateway stops."""
        viewer = Viewer(self.url)
        self.viewers.append(viewer)
        return await viewer.connect(auth, **options)

    async def stop(self, *, close_viewers: bool = True) -> None:
        if self.stopped:
            return
        self.stopped = True
        if close_viewers:
            await asyncio.gather(*(viewer.disconnect() for viewer in self.viewers))
        await self.runner.cleanup()
        # python-socketio's client does not close its WebSocket when the server says goodbye
        # (a browser does); closing the clients here keeps the next test's loop clean.
        await asyncio.gather(*(viewer.disconnect() for viewer in self.viewers))


@asynccontextmanager
async def running_gateway(
    config: GatewayConfig,
    clock: ManualClock | None = None,
    backoff: Backoff | None = None,
    *,
    websockets_through_aiohttp: bool = False,
) -> AsyncIterator[RunningGateway]:
    """The gateway app served on a free loopback port, as ``python -m socket_gateway`` serves it.

    With ``websockets_through_aiohttp``, every request is served by aiohttp alone (a plain TCPSite):
    WebSocket sessions are then python-engineio's own, as an upgraded polling session is.
    """
    app = create_app(config, clock=clock, backoff=backoff or Backoff(0.02, 0.1))
    runner = web.AppRunner(app, shutdown_timeout=1.0, **app[GATEWAY].websockets.runner_options())
    await runner.setup()
    running = RunningGateway(app[GATEWAY], runner, 0, clock)
    try:
        site = (
            web.TCPSite(runner, config.host, config.port)
            if websockets_through_aiohttp
            else GatewaySite(runner, config.host, config.port)
        )
        await site.start()
        running.port = runner.addresses[0][1]
        yield running
    finally:
        await running.stop()


@dataclass
class Viewer:
    """A real python-socketio client that records every ``viewerCountUpdate`` it receives."""

    url: str
    client: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(reconnection=False))
    updates: list[dict[str, Any]] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self.client.on("viewerCountUpdate", self._on_update)

    async def _on_update(self, payload: dict[str, Any]) -> None:
        async with self._arrived:
            self.updates.append(payload)
            self._arrived.notify_all()

    async def connect(self, auth: dict[str, Any] | None = None, **options: Any) -> Viewer:
        try:
            options.setdefault("transports", ["websocket"])
            await self.client.connect(self.url, auth=auth, wait_timeout=WAIT, **options)
        except socketio.exceptions.ConnectionError:
            # A refused client keeps its HTTP session open; close it so nothing leaks.
            http = self.client.eio.http
            if http is not None and not http.closed:
                await http.close()
            raise
        return self

    async def disconnect(self) -> None:
        if self.client.connected:
            await self.client.disconnect()
        http = self.client.eio.http
        if http is not None and not http.closed:
            await http.close()

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, timeout=WAIT)

    async def wait_for(self, viewer_count: int, unique_viewers: int | None = None) -> dict[str, Any]:
        """Waits until the latest update shows these counts; returns it."""

        def matches() -> bool:
            if not self.updates:
                return False
            last = self.updates[-1]
            return last["viewerCount"] == viewer_count and (
                unique_viewers is None or last["uniqueViewers"] == unique_viewers
            )

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(matches), WAIT)
        return self.updates[-1]


def stored_snapshots(sqlite_path: str, auction_id: str) -> list[dict[str, Any]]:
    """The snapshots the ingest service stored for the auction, read from its SQLite file."""
    with closing(sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT * FROM viewer_snapshots WHERE auction_id = ? ORDER BY minute_start", (auction_id,)
        ).fetchall()
    return [dict(row) for row in rows]
