"""Coalesced ``viewerCountUpdate`` broadcasts: at most one per room per interval, ending on the truth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from socket_gateway.live.rooms import EMPTY, RoomCounts, RoomRegistry

logger = logging.getLogger(__name__)

SendCounts = Callable[[str, RoomCounts], Awaitable[None]]


class CountBroadcaster:
    """Tells a room its counts when they change, at most once per ``interval_seconds``.

    The first change after a quiet period goes out at once (a lone viewer sees the count move
    without waiting); further changes within the interval are folded into one trailing update
    that reads the registry when it fires, so it always carries the latest value. An update
    that would repeat what the room was last told is not sent. A join storm of N viewers thus
    costs one broadcast per interval (N messages) instead of one per join (N²/2 messages).
    """

    def __init__(self, registry: RoomRegistry, send: SendCounts, interval_seconds: float) -> None:
        self._registry = registry
        self._send = send
        self._interval = interval_seconds
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._last_sent: dict[str, RoomCounts] = {}
        self._last_sent_at: dict[str, float] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def room_changed(self, auction_id: str) -> None:
        """Notes that the room's counts may have changed; schedules its update if none is due."""
        if self._closed or auction_id in self._pending:
            return
        loop = asyncio.get_running_loop()
        last = self._last_sent_at.get(auction_id)
        delay = 0.0 if last is None else max(0.0, last + self._interval - loop.time())
        # Even an immediate update runs as a callback: a socket joining from its connect handler
        # must have its CONNECT packet queued before any event reaches it.
        self._pending[auction_id] = loop.call_later(delay, self._flush, auction_id)
        self._idle.clear()

    def _flush(self, auction_id: str) -> None:
        del self._pending[auction_id]
        try:
            self._flush_room(auction_id)
        finally:
            self._note_if_idle()

    def _flush_room(self, auction_id: str) -> None:
        counts = self._registry.counts(auction_id)
        if counts == EMPTY:
            # Nobody is left to tell; forgetting the room keeps this state bounded by live rooms.
            self._last_sent.pop(auction_id, None)
            self._last_sent_at.pop(auction_id, None)
            return
        if self._last_sent.get(auction_id) == counts:
            return
        self._last_sent[auction_id] = counts
        self._last_sent_at[auction_id] = asyncio.get_running_loop().time()
        task = asyncio.create_task(self._send_logged(auction_id, counts))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._note_if_idle()

    def _note_if_idle(self) -> None:
        if not self._pending and not self._sending:
            self._idle.set()

    @property
    def remembered_rooms(self) -> int:
        """Rooms whose last update is remembered (bounded by the rooms with viewers)."""
        return len(self._last_sent)

    async def wait_idle(self) -> None:
        """Returns once no update is scheduled or being sent."""
        await self._idle.wait()

    async def _send_logged(self, auction_id: str, counts: RoomCounts) -> None:
        try:
            await self._send(auction_id, counts)
        except Exception:
            # One failed broadcast must not stop later ones; the next change re-sends the truth.
            logger.exception("Count update failed", extra={"auction_id": auction_id})
            self._last_sent.pop(auction_id, None)

    async def close(self) -> None:
        """Cancels the updates not yet due and waits for those being sent."""
        self._closed = True
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
