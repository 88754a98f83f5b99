"""Simulated viewers: real Socket.IO clients that join, leave and switch auction rooms on a gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio  # type: ignore[import-untyped]

from service_common.supervision import Supervisor, TaskHealth

logger = logging.getLogger(__name__)

# How long one connection attempt or acknowledgement may take before it counts as failed.
REPLY_TIMEOUT_SECONDS = 10.0
# Connections opened at once: enough to fill rooms quickly without a handshake storm.
CONNECT_CONCURRENCY = 50
# After the churn stops, how long to wait for the gateway's (coalesced) updates to catch up.
SETTLE_SECONDS = 3.0
# A dropped viewer reconnects after 0.5 s, doubling up to 5 s while the gateway stays away (with
# jitter, so a restarted gateway is not hit by every viewer at once), as a browser tab's client does.
RECONNECT_INITIAL_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
# python-socketio's and python-engineio's own lines ("packet queue is empty, aborting" when a gateway
# stalls) go to this logger rather than to each library's own stderr handler: the progress line
# already counts drops and reconnections. ``python -m simulate --verbose`` shows them.
TRANSPORT_LOGGER = "simulate.transport"


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.

    Args:
        gateway_url: the socket gateway, e.g. ``http://127.0.0.1:8081``.
        viewers: connections to open.
        auctions: auction rooms to spread them over (``<prefix>1`` … ``<prefix>M``).
        duration_seconds: how long the churn lasts.
        churn_per_minute: how often, on average, each viewer leaves its room (then rejoins one at random
            after a short pause); 0 keeps everyone where they joined.
        tabs_per_viewer: connections sharing one viewer id (a viewer with several tabs); 1: all unique.
        auction_prefix: the auction ids' prefix.
        seed: the random seed, for a repeatable run.
    """

    gateway_url: str
    viewers: int = 20
    auctions: int = 2
    duration_seconds: float = 60.0
    churn_per_minute: float = 6.0
    tabs_per_viewer: int = 1
    auction_prefix: str = "auction-"
    seed: int | None = None

    @property
    def auction_ids(self) -> list[str]:
        return [f"{self.auction_prefix}{number}" for number in range(1, self.auctions + 1)]


@dataclass
class Progress:
    """What the simulation has done so far, and what the gateway told its viewers."""

    elapsed_seconds: float = 0.0
    connected: int = 0
    refused: int = 0
    joins: int = 0
    leaves: int = 0
    failed_events: int = 0
    # Connections the gateway dropped (a restart, a stall) and connections made again after one.
    dropped: int = 0
    reconnected: int = 0
    # Simulated viewers in each room now, as the simulation counts them: connections, viewer ids.
    simulated: dict[str, int] = field(default_factory=dict)
    simulated_unique: dict[str, int] = field(default_factory=dict)
    # The latest viewerCountUpdate per room, as the gateway sent it: (viewerCount, uniqueViewers).
    reported: dict[str, tuple[int, int]] = field(default_factory=dict)

    def rooms_agree(self) -> bool:
        """Whether the gateway's latest counts equal the simulated ones in every room we are in."""
        return all(
            self.reported.get(auction) == (count, self.simulated_unique.get(auction, 0))
            for auction, count in self.simulated.items()
            if count > 0
        )

    def line(self, duration_seconds: float, max_rooms: int = 4) -> str:
        """One progress line: time, connections, events, and the busiest rooms as the gateway counts them."""
        rooms = sorted(self.simulated, key=lambda auction: -self.simulated[auction])[:max_rooms]
        shown = "  ".join(
            f"{auction} {self.reported.get(auction, (0, 0))[0]}/{self.simulated[auction]}"
            for auction in rooms
        )
        more = f" (+{len(self.simulated) - len(rooms)} rooms)" if len(self.simulated) > len(rooms) else ""
        refused = f" refused {self.refused}" if self.refused else ""
        failed = f" failed {self.failed_events}" if self.failed_events else ""
        dropped = f" dropped {self.dropped} reconnected {self.reconnected}" if self.dropped else ""
        connections = f"connected {self.connected}{refused}{dropped}"
        return (
            f"{self.elapsed_seconds:5.0f}/{duration_seconds:.0f} s  {connections}  "
            f"joins {self.joins} leaves {self.leaves}{failed}  watching (gateway/simulated): {shown}{more}"
        )


class ConnectionDropped(Exception):
    """The gateway closed a viewer's connection, or it failed to open again."""


class SimulatedViewer:
    """One Socket.IO connection that joins, leaves and switches rooms as a person's tab would.

    When the gateway drops it (a restart, a stall), it reconnects with backoff and rejoins the room
    it was in, as a browser tab's Socket.IO client does.
    """

    def __init__(self, simulation: Simulation, viewer_id: str, auction_id: str) -> None:
        self.simulation = simulation
        self.viewer_id = viewer_id
        self.auction_id: str | None = auction_id
        # Set while connected; cleared when the gateway drops the connection.
        self.up = asyncio.Event()
        self.dropped = asyncio.Event()
        self.client = self._new_client()
        self._client_used = False

    def _new_client(self) -> socketio.AsyncClient:
        transport = logging.getLogger(TRANSPORT_LOGGER)
        # reconnection=False: python-socketio does not reconnect after a server's goodbye (a
        # gateway restarting cleanly), so the viewer does it, the same way whatever the cause.
        # handle_sigint=False: the libraries' own SIGINT handlers would cancel every task of the
        # loop on Ctrl-C (a traceback); simulate's own handler ends the run instead.
        client = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, logger=transport, engineio_logger=transport
        )
        client.on("viewerCountUpdate", self._on_update)
        client.on("disconnect", self._on_disconnect)
        return client

    def _auth(self) -> dict[str, str]:
        """The connect payload, read at each (re)connection: a reconnecting viewer rejoins its room."""
        auth = {"viewerId": self.viewer_id}
        if self.auction_id is not None:
            auth["auctionId"] = self.auction_id
        return auth

    async def _on_update(self, payload: Any) -> None:
        try:
            counts = (int(payload["viewerCount"]), int(payload["uniqueViewers"]))
            auction_id = str(payload["auctionId"])
        except (TypeError, KeyError, ValueError):
            logger.debug("Malformed viewerCountUpdate ignored: %r", payload)
            return
        updated = self.simulation.updated
        async with updated:
            self.simulation.progress.reported[auction_id] = counts
            updated.notify_all()

    async def _on_disconnect(self, *_: Any) -> None:
        self.up.clear()
        self.dropped.set()

    async def connect(self) -> bool:
        """Opens a connection (a fresh client each time); whether the gateway accepted it."""
        if self._client_used:
            await self._close_http()
            self.client = self._new_client()
        self._client_used = True
        self.dropped.clear()
        try:
            await self.client.connect(
                self.simulation.config.gateway_url,
                auth=self._auth,
                transports=["websocket"],
                wait_timeout=REPLY_TIMEOUT_SECONDS,
            )
        except (socketio.exceptions.ConnectionError, OSError, TimeoutError) as error:
            logger.debug("Connection refused: %s", error)
            await self._close_http()
            return False
        self.up.set()
        return True

    async def stay_connected(self) -> None:
        """One supervised stretch of the connection: reconnects if needed, raises when it drops."""
        if not self.up.is_set():
            if not await self.connect():
                raise ConnectionDropped("the gateway did not accept the connection")
            self.simulation.progress.reconnected += 1
        await self.dropped.wait()
        self.simulation.progress.dropped += 1
        raise ConnectionDropped("the gateway dropped the connection")

    async def leave(self) -> bool:
        answer = await self._call("leaveAuction", None)
        return bool(answer and answer.get("ok"))

    async def join(self, auction_id: str) -> bool:
        answer = await self._call("joinAuction", {"auctionId": auction_id})
        return bool(answer and answer.get("ok"))

    async def _call(self, event: str, data: Any) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = await self.client.call(event, data, timeout=REPLY_TIMEOUT_SECONDS)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError) as error:
            logger.debug("%s failed: %s", event, error)
            return None
        return answer

    async def disconnect(self) -> None:
        self.up.clear()
        if self.client.connected:
            await self.client.disconnect()
        await self._close_http()

    async def _close_http(self) -> None:
        # python-socketio leaves its HTTP session open after a refused or closed connection.
        http = self.client.eio.http
        if http is not None and not http.closed:
            await http.close()


class Simulation:
    """Brings ``config.viewers`` clients to the gateway, churns them, and reports progress."""

    def __init__(self, config: SimulationConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.random = random.Random(config.seed)
        self.progress = Progress()
        self.viewers: list[SimulatedViewer] = []
        # Notified on every viewerCountUpdate any viewer receives.
        self.updated = asyncio.Condition()
        self._started = 0.0

    def _count_rooms(self) -> None:
        live = [viewer for viewer in self.viewers if viewer.client.connected and viewer.auction_id]
        self.progress.connected = sum(1 for viewer in self.viewers if viewer.client.connected)
        rooms = Counter(viewer.auction_id for viewer in live)
        unique = Counter(auction for auction, _ in {(viewer.auction_id, viewer.viewer_id) for viewer in live})
        self.progress.simulated = {auction: rooms.get(auction, 0) for auction in self.config.auction_ids}
        self.progress.simulated_unique = {
            auction: unique.get(auction, 0) for auction in self.config.auction_ids
        }
        self.progress.elapsed_seconds = self.clock() - self._started

    def snapshot(self) -> Progress:
        """The progress now (counts recomputed from the viewers' current rooms)."""
        self._count_rooms()
        return self.progress

    async def run(
        self, stop: asyncio.Event, report: Callable[[Progress], None], every_seconds: float
    ) -> Progress:
        """Connects, churns until ``duration_seconds`` pass or ``stop`` is set, then disconnects everyone.

        Args:
            stop: set it to end the churn early (Ctrl-C).
            report: called with the progress every ``every_seconds`` and once at the end.
            every_seconds: how often to report.

        Returns:
            The progress at the end of the churn, before the viewers disconnected.
        """
        self._started = self.clock()
        auctions = self.config.auction_ids
        self.viewers = [
            SimulatedViewer(
                self, f"sim-viewer-{index // self.config.tabs_per_viewer}", auctions[index % len(auctions)]
            )
            for index in range(self.config.viewers)
        ]
        ending = asyncio.Event()
        reporter = asyncio.create_task(self._report_until(ending, report, every_seconds))
        # Keeps each viewer that got in connected: one the gateway drops reconnects with backoff.
        connections = Supervisor(
            initial_backoff_seconds=RECONNECT_INITIAL_SECONDS,
            max_backoff_seconds=RECONNECT_MAX_SECONDS,
            # Counted in the progress line (dropped / reconnected); per viewer only with --verbose.
            report_failure=_log_reconnection,
        )
        try:
            connecting = asyncio.create_task(self._connect_all())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([connecting, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not connecting.done():
                # Ctrl-C while connecting: no churn, straight to the end.
                connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            self.progress.joins += sum(1 for viewer in self.viewers if viewer.up.is_set())
            for index, viewer in enumerate(self.viewers):
                if viewer.up.is_set():
                    connections.start(f"viewer-{index}", viewer.stay_connected)
            churners = [asyncio.create_task(self._churn(viewer, ending)) for viewer in self.viewers]
            remaining = self.config.duration_seconds - (self.clock() - self._started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, remaining))
            ending.set()
            # Churners finish the event in flight (so the simulation's idea of each room stays true);
            # one that gets no answer in time is cancelled.
            if churners:
                _, stuck = await asyncio.wait(churners, timeout=REPLY_TIMEOUT_SECONDS)
                for churner in stuck:
                    churner.cancel()
            await asyncio.gather(*churners, return_exceptions=True)
            await self._settle()
            final = self.snapshot()
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            report(final)
            return final
        finally:
            ending.set()
            reporter.cancel()
            await connections.stop()
            await asyncio.gather(*(viewer.disconnect() for viewer in self.viewers), return_exceptions=True)

    async def _connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(viewer: SimulatedViewer) -> None:
            async with gate:
                if not await viewer.connect():
                    viewer.auction_id = None
                    self.progress.refused += 1

        await asyncio.gather(*(connect(viewer) for viewer in self.viewers))

    async def _churn(self, viewer: SimulatedViewer, ending: asyncio.Event) -> None:
        if not viewer.up.is_set() or self.config.churn_per_minute <= 0:
            return
        rate_per_second = self.config.churn_per_minute / 60
        # Leaving is a Poisson process per viewer: the waits between leaves are exponential.
        while not await _wait_or_end(ending, self.random.expovariate(rate_per_second)):
            # While the gateway is away the viewer waits for its reconnection rather than failing.
            if await _wait_for_either(viewer.up, ending) is ending:
                return
            if await viewer.leave():
                viewer.auction_id = None
                self.progress.leaves += 1
            else:
                self.progress.failed_events += 1
            if await _wait_or_end(ending, self.random.uniform(0.2, 2.0)):
                return
            if await _wait_for_either(viewer.up, ending) is ending:
                return
            auction_id = self.random.choice(self.config.auction_ids)
            if await viewer.join(auction_id):
                viewer.auction_id = auction_id
                self.progress.joins += 1
            else:
                self.progress.failed_events += 1

    async def _settle(self) -> None:
        """Waits (briefly) for the gateway's coalesced updates to show the rooms as they now are."""
        async with self.updated:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.updated.wait_for(lambda: self.snapshot().rooms_agree()), SETTLE_SECONDS
                )

    async def _report_until(
        self, ending: asyncio.Event, report: Callable[[Progress], None], every: float
    ) -> None:
        while not await _wait_or_end(ending, every):
            report(self.snapshot())


async def _wait_or_end(ending: asyncio.Event, seconds: float) -> bool:
    """Waits ``seconds`` or until ``ending`` is set, whichever comes first; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ending.wait(), seconds)
    return ending.is_set()


def _log_reconnection(health: TaskHealth, error: Exception, delay: float) -> None:
    logger.debug("%s: %s; reconnecting in %.1f s", health.name, error, delay)


async def _wait_for_either(first: asyncio.Event, second: asyncio.Event) -> asyncio.Event:
    """Waits until one of two events is set; returns it (``second`` when both are)."""
    if second.is_set() or first.is_set():
        return second if second.is_set() else first
    waiters = {asyncio.create_task(first.wait()): first, asyncio.create_task(second.wait()): second}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return second if second.is_set() else first
