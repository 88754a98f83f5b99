"""Keeping this node's contribution in Redis in step with its registry."""

from __future__ import annotations

import asyncio

from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.publish import RoomPublisher
from socket_gateway.cluster.relay import CountRelay
from socket_gateway.cluster.sampler_lease import SamplerLease
from socket_gateway.cluster.store import REDIS_FAILURES, RedisCounts, RoomWrite
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.rooms import RoomCounts, RoomRegistry


class RoomSync:
    """Writes the rooms that changed to Redis, and remembers each room's global counts as last read.

    Socket handlers call ``room_changed`` (synchronous, never waiting for Redis). One task (``run``)
    writes the changed rooms in one pipeline, asking each room's publish gate in the same script; a
    whole re-sync (``resync``) replaces everything Redis holds for this node. Before a room's write the
    node subscribes to the room's updates if it now has a viewer there, or leaves them if it has
    none (``CountRelay.follow``). A write that makes this node a room's first writer makes it the
    room's sampling owner (``sampler``). While the node is not healthy a change is told to the room
    by ``local`` (this node's counts) instead.
    """

    def __init__(
        self,
        store: RedisCounts,
        registry: RoomRegistry,
        health: NodeHealth,
        publisher: RoomPublisher,
        relay: CountRelay,
        local: CountBroadcaster,
        sampler: SamplerLease,
    ) -> None:
        self._store = store
        self._sampler = sampler
        self._relay = relay
        self._registry = registry
        self._health = health
        self._publisher = publisher
        self._local = local
        self._dirty: set[str] = set()
        # Held while writing this node's contribution: batches and whole re-syncs land in order.
        self._writing = asyncio.Lock()
        self._wake = asyncio.Event()
        # Per room: the viewer ids last written, and the global counts last read with this node's
        # counts at the time.
        self._synced: dict[str, set[str]] = {}
        self._global: dict[str, tuple[RoomCounts, RoomCounts]] = {}

    def room_changed(self, auction_id: str) -> None:
        if not self._health.healthy:
            self._local.room_changed(auction_id)
            return
        self._dirty.add(auction_id)
        self._wake.set()

    def counts(self, auction_id: str) -> RoomCounts:
        """The room's global counts as last read, moved by this node's changes since (for a joiner's ack)."""
        local = self._registry.counts(auction_id)
        known = self._global.get(auction_id)
        if not self._health.healthy or known is None:
            return local
        global_counts, local_then = known
        return RoomCounts(
            max(
                local.viewer_count, global_counts.viewer_count + local.viewer_count - local_then.viewer_count
            ),
            max(
                local.unique_viewers,
                global_counts.unique_viewers + local.unique_viewers - local_then.unique_viewers,
            ),
        )

    async def run(self) -> None:
        """The sync loop: one batch of the rooms changed since the last, whenever there are some."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._writing:
                if not self._health.healthy or not self._dirty:
                    continue
                rooms, self._dirty = self._dirty, set()
                try:
                    await self._relay.follow(rooms)
                    await self._sync(rooms)
                except REDIS_FAILURES as error:
                    self._health.degrade(error)

    async def _sync(self, rooms: set[str]) -> None:
        writes = []
        local_then = {}
        for auction_id in rooms:
            connections, anonymous, viewers = self._registry.contribution(auction_id)
            before = self._synced.get(auction_id, set())
            # The room's gate is asked in the same script, unless a publish is already due for it
            # (a retry or a settle, which publishes this change too).
            ask = not self._publisher.is_due(auction_id)
            writes.append(
                RoomWrite(auction_id, connections, anonymous, viewers - before, before - viewers, ask)
            )
            local_then[auction_id] = (viewers, self._registry.counts(auction_id))
        replies = await self._store.sync_rooms(writes, self._publisher.interval_ms)
        for write, (global_counts, decision, claimed) in zip(writes, replies, strict=True):
            auction_id = write.auction_id
            if claimed:
                self._sampler.claimed((auction_id,))
            if decision is not None:
                self._publisher.decided(auction_id, decision)
            viewers, local = local_then[auction_id]
            if local.viewer_count:
                self._synced[auction_id] = viewers
            else:
                self._synced.pop(auction_id, None)
            if global_counts.viewer_count:
                self._global[auction_id] = (global_counts, local)
            else:
                self._global.pop(auction_id, None)

    async def resync(self) -> None:
        """Writes this node's whole state as a new member, replacing what Redis held for it (start, a
        lapsed lease, return of Redis)."""
        # After any batch in flight: a batch read from the registry before this state and landing in
        # Redis after it would leave its older counts there for good (seen in the cluster benchmark,
        # when an overloaded node's late heartbeat found its lease lapsed mid-batch).
        async with self._writing:
            self._dirty.clear()
            rooms = {a: self._registry.contribution(a) for a in self._registry.active_rooms()}
            await self._relay.follow(self._relay.following | rooms.keys())
            changed, owned = await self._store.replace_all(rooms)
            self._sampler.replace(owned)
            self._synced = {a: viewers for a, (_c, _a, viewers) in rooms.items()}
            self._global.clear()
        for auction_id in {*rooms, *changed}:
            self._publisher.schedule(auction_id, 0.0)
