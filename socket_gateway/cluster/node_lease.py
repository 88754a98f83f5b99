"""This node's lease in Redis: renewed on a timer, re-written when lapsed, dead nodes reaped."""

from __future__ import annotations

import asyncio
import logging

from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.publish import RoomPublisher
from socket_gateway.cluster.sampler_lease import SamplerLease
from socket_gateway.cluster.store import REDIS_FAILURES, RedisCounts
from socket_gateway.cluster.sync import RoomSync

logger = logging.getLogger(__name__)


class NodeLease:
    """The heartbeat: renews this node's lease, reaps dead nodes' contributions (in bounded chunks),
    holds the coordinator lease and picks up the rooms whose sampling passed to this node.

    A heartbeat that finds the lease lapsed (a long pause, a partition, a Redis restart), or the node
    degraded, writes the node's whole state again first. The rooms a reap changed are published by
    this node.
    """

    def __init__(
        self,
        store: RedisCounts,
        health: NodeHealth,
        rooms: RoomSync,
        publisher: RoomPublisher,
        sampler: SamplerLease,
        lease_seconds: float,
    ) -> None:
        self.live_nodes = 0
        self._store = store
        self._health = health
        self._rooms = rooms
        self._publisher = publisher
        self._sampler = sampler
        self._heartbeat_seconds = lease_seconds / 3

    async def run(self) -> None:
        """The heartbeat loop."""
        while True:
            try:
                await self._beat()
            except REDIS_FAILURES as error:
                self._health.degrade(error)
            # Nothing signals "time to renew": a lease is renewed on a timer, a third of its length.
            await asyncio.sleep(self._heartbeat_seconds)

    async def _beat(self) -> None:
        valid, self.live_nodes = await self._store.heartbeat()
        if not valid or not self._health.healthy:
            await self._rooms.resync()
            self._health.recovered(lease_lapsed=not valid, live_nodes=self.live_nodes)
        reaped = await self._store.reap()
        self._sampler.claimed(reaped.mine)
        if reaped.changed:
            logger.warning(
                "Dead gateway node(s) reaped; their viewers removed",
                extra={"node": self._store.node_id, "rooms": len(reaped.changed)},
            )
            for auction_id in reaped.changed:
                self._publisher.schedule(auction_id, 0.0)
        await self._sampler.renew()
