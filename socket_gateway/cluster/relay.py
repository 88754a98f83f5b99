"""Count updates between nodes on per-auction Redis channels: a node hears only the auctions it serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from service_common.log_limits import RateLimitedLog
from socket_gateway.cluster.publish import SendCounts
from socket_gateway.cluster.store import PREFIX, REDIS_FAILURES, RedisClient
from socket_gateway.live.rooms import RoomCounts, RoomRegistry
from socket_gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

# A new subscription is awaited this long before the room's write goes ahead anyway (Redis slow or
# gone: the write then fails on its own and the node degrades).
SUBSCRIBE_WAIT_SECONDS = 1.0
# Between attempts to listen again once Redis failed; nothing signals its return.
RETRY_SECONDS = 0.5


class CountRelay:
    """Publishes each room update on its auction's channel; subscribes to the rooms with a viewer here.

    Channel ``p:u:{a}`` (``a`` the auction id, in braces: Redis Cluster's hash tag) carries the
    room's counts and the publishing node's id. A node subscribes to the channel of every room with
    a viewer on it (``follow``, called before the room's write reaches Redis, and waiting for the
    subscription, so no update published after the write is missed) and leaves it when its last
    viewer leaves: the updates of other auctions never reach it. The publishing node tells its own
    sockets directly (``here``) and skips its own message when it comes back. One more channel, never
    left, keeps the subscription open while the node has no rooms, so ``listening`` always says
    whether the connection is up.
    """

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        registry: RoomRegistry,
        here: SendCounts,
        relayed: SendCounts,
        metrics: GatewayMetrics,
        prefix: str = PREFIX,
    ) -> None:
        self._metrics = metrics
        self._client = client
        self._pubsub = client.pubsub()
        self._node_id = node_id
        self._registry = registry
        self._here = here
        self._relayed = relayed
        self._head = f"{prefix}u:{{"
        self._control = f"{prefix}relay"
        self._following: set[str] = set()
        self._confirming: dict[bytes, asyncio.Event] = {}
        self._control_subscribed = False
        # One subscribing call at a time: two at once could each open a connection for the pub/sub.
        self._subscribing = asyncio.Lock()
        self._failures = RateLimitedLog(logger, interval_seconds=60.0)

    def channel(self, auction_id: str) -> str:
        return f"{self._head}{auction_id}}}"

    @property
    def following(self) -> frozenset[str]:
        """The rooms whose channels this node is subscribed to."""
        return frozenset(self._following)

    @property
    def listening(self) -> bool:
        """Whether other nodes' updates reach this node: subscribed, on a live connection."""
        connection = self._pubsub.connection
        return self._pubsub.subscribed and connection is not None and bool(connection.is_connected)

    async def publish(self, auction_id: str, counts: RoomCounts) -> None:
        """The room's update: to this node's sockets in it, then to every other node with viewers in it."""
        await self._here(auction_id, counts)
        message = json.dumps([self._node_id, counts.viewer_count, counts.unique_viewers])
        await self._client.publish(self.channel(auction_id), message)

    async def follow(self, rooms: Iterable[str]) -> None:
        """Subscribes to those of ``rooms`` with a viewer on this node, leaves the others.

        Raises one of ``REDIS_FAILURES`` when Redis fails; the rooms stay as they were then.
        """
        joining: list[str] = []
        leaving: list[str] = []
        for auction_id in rooms:
            served = self._registry.counts(auction_id).viewer_count > 0
            if served and auction_id not in self._following:
                joining.append(auction_id)
            elif not served and auction_id in self._following:
                leaving.append(auction_id)
        if leaving:
            async with self._subscribing:
                await self._pubsub.unsubscribe(*(self.channel(a) for a in leaving))
            self._following.difference_update(leaving)
        if joining:
            channels = [self.channel(a) for a in joining]
            confirmed = [self._confirming.setdefault(c.encode(), asyncio.Event()) for c in channels]
            try:
                async with self._subscribing:
                    await self._pubsub.subscribe(*channels)
                self._following.update(joining)
                # Redis confirms each subscription on the listening connection, in order with its
                # messages; the room's write goes on another connection and must not overtake it.
                waits = [asyncio.ensure_future(event.wait()) for event in confirmed]
                _done, pending = await asyncio.wait(waits, timeout=SUBSCRIBE_WAIT_SECONDS)
                for wait in pending:
                    wait.cancel()
            finally:
                for channel in channels:
                    self._confirming.pop(channel.encode(), None)

    async def run(self) -> None:
        """Hears the subscribed channels until cancelled; after Redis fails, listens again.

        redis-py subscribes a reconnected connection to its channels again by itself.
        """
        while True:
            try:
                if not self._control_subscribed:
                    async with self._subscribing:
                        await self._pubsub.subscribe(self._control)
                    self._control_subscribed = True
                async for message in self._pubsub.listen():
                    await self._on_message(message)
                # listen() ends only once nothing is subscribed (the pub/sub was reset): start again.
                self._control_subscribed = False
            except REDIS_FAILURES as error:
                self._failures.warning(
                    "redis", "Not receiving other nodes' updates; retrying", extra={"error": repr(error)}
                )
                await asyncio.sleep(RETRY_SECONDS)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "subscribe":
            confirmed = self._confirming.pop(channel, None)
            if confirmed is not None:
                confirmed.set()
            return
        if kind != "message":
            return
        node_id, viewer_count, unique_viewers = json.loads(message["data"])
        if node_id == self._node_id:
            return
        self._metrics.cluster_updates_received_total += 1
        auction_id = channel.decode()[len(self._head) : -1]
        if not self._registry.counts(auction_id).viewer_count:
            self._metrics.cluster_updates_unserved_total += 1
            return
        try:
            await self._relayed(auction_id, RoomCounts(viewer_count, unique_viewers))
        except Exception:
            # The next update or the room owner's refresh tells the room again.
            logger.exception("Relayed count update failed", extra={"auction_id": auction_id})

    async def close(self) -> None:
        with contextlib.suppress(*REDIS_FAILURES):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
