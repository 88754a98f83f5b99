"""Telling rooms their global counts: through each room's publish gate, at most once per interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from service_common.cancellation import cancel_and_wait
from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.store import REDIS_FAILURES, Published, RedisCounts
from socket_gateway.live.rooms import RoomCounts

logger = logging.getLogger(__name__)

SendCounts = Callable[[str, RoomCounts], Awaitable[None]]


class RoomPublisher:
    """Publishes rooms' counts to every node serving the room (``publish``: ``CountRelay.publish``).

    A room's publish gate (a Lua script) lets one update per interval per room across all nodes; a node
    the gate holds back asks again when the interval ends, so the room's last update carries the
    true counts. Two intervals after a publish the counts go out once more (one settling update per
    burst). Each room's sampling owner also tells a quiet room its counts again (``sample.lua``).
    """

    def __init__(self, store: RedisCounts, health: NodeHealth, publish: SendCounts, interval_seconds: float):
        self.interval_ms = max(1, int(interval_seconds * 1000))
        self._store = store
        self._health = health
        self._publish = publish
        self._publish_due: dict[str, asyncio.TimerHandle] = {}
        self._settle_due: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def is_due(self, auction_id: str) -> bool:
        """Whether a call of the room's gate is pending (a retry or a settle)."""
        return auction_id in self._publish_due

    def schedule(self, auction_id: str, delay: float, settle: bool = False) -> None:
        # One pending call per room: a pending settle publishes any change too, and a settle asked
        # for while a call is pending makes that call a settling one (a retry that found the counts
        # unchanged would otherwise drop it).
        if self._closed:
            return
        if settle:
            self._settle_due.add(auction_id)
        if auction_id not in self._publish_due:
            loop = asyncio.get_running_loop()
            self._publish_due[auction_id] = loop.call_later(delay, self._start_publish, auction_id)

    def _start_publish(self, auction_id: str) -> None:
        del self._publish_due[auction_id]
        settle = auction_id in self._settle_due
        self._settle_due.discard(auction_id)
        self._spawn(self._publish_room(auction_id, settle))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_room(self, auction_id: str, settle: bool = False) -> None:
        if not self._health.healthy:
            return
        try:
            decision = await self._store.publish_gate(auction_id, self.interval_ms, settle)
        except REDIS_FAILURES as error:
            self._health.degrade(error)
            return
        self.decided(auction_id, decision, settle)

    def decided(self, auction_id: str, decision: Published, settle: bool = False) -> None:
        """Acts on the gate's answer for the room (asked here or in a sync batch)."""
        if decision.retry_after is not None:
            # Another node told the room within this interval, perhaps before this node's change:
            # asking again when its interval ends makes the room's last update the true one.
            self.schedule(auction_id, decision.retry_after, settle)
        elif decision.counts is not None:
            # From a task: the sync loop must not wait for an emit to every socket in the room.
            self._spawn(self._deliver(auction_id, decision.counts, settle))

    async def _deliver(self, auction_id: str, counts: RoomCounts, settle: bool) -> None:
        await self.tell(auction_id, counts)
        if not settle:
            # Two nodes' emits can overtake each other on the way to a room (an emit delayed on a busy
            # node lands after a later one), leaving an old value on show while Redis holds the new
            # one. Two intervals after a publish the counts are published once more (one settling
            # update per burst, through the same gate), so the room ends on the truth.
            self.schedule(auction_id, 2 * self.interval_ms / 1000, settle=True)

    async def tell(self, auction_id: str, counts: RoomCounts) -> None:
        try:
            await self._publish(auction_id, counts)
        except Exception:
            # The next change or refresh publishes the truth again.
            logger.exception("Cluster count update failed", extra={"auction_id": auction_id})

    def stop(self) -> None:
        """Cancels the pending gate calls; nothing is scheduled after this."""
        self._closed = True
        for handle in self._publish_due.values():
            handle.cancel()
        self._publish_due.clear()

    async def cancel_tasks(self) -> None:
        await cancel_and_wait(*self._tasks)

    async def tell_on_leaving(self, rooms: list[str]) -> None:
        """Tells the rooms this node just left their new counts, now rather than at their next change."""
        await asyncio.gather(*(self._tell_on_leaving(auction_id) for auction_id in rooms))

    async def _tell_on_leaving(self, auction_id: str) -> None:
        # Through the gate, like every publish. Its lock lasts one interval: waiting it out twice at
        # most bounds the shutdown, and the owner's refresh covers a room still locked after that.
        for _attempt in range(3):
            decision = await self._store.publish_gate(auction_id, self.interval_ms)
            if decision.retry_after is None:
                if decision.counts is not None:
                    await self.tell(auction_id, decision.counts)
                return
            # The lock expires on Redis's clock; there is no event to wait for.
            await asyncio.sleep(decision.retry_after)
