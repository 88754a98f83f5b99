"""The sampler lease: which node samples the global counts, and which of its snapshots may be queued."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.store import REDIS_FAILURES, RedisCounts
from socket_gateway.live.rooms import RoomCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot

logger = logging.getLogger(__name__)


class SamplerLease:
    """This node's hold on the sampler lease, renewed with the node lease (``renew``), and its fencing.

    Only the holder samples; its snapshots reach the outbox only after the lease's fencing token is
    checked in Redis (``fence``): one snapshot per auction-minute across the cluster. A stopping
    holder closes the interval it was sampling itself (``hand_over``) and records it in Redis as it
    gives the lease up (``closed_interval``); the next holder drops that interval from what it sends.
    The lease is lost on any Redis failure (the node's ``degrade``).
    """

    def __init__(self, store: RedisCounts, health: NodeHealth, clock: Callable[[], float]) -> None:
        self.token = 0
        self.leader_since = 0.0
        # The latest interval a stopping leader closed itself, as last read from Redis.
        self.handed_over = 0
        # The interval this node closed itself on stopping, recorded when it gives the lease up.
        self.closed_interval = 0
        self._store = store
        self._health = health
        self._clock = clock
        health.on_degrade(self._lose)

    def _lose(self) -> None:
        self.token = 0

    async def renew(self) -> None:
        """Holds the lease, or takes it when free (raises one of ``REDIS_FAILURES``)."""
        token, self.handed_over = await self._store.sampler_lease()
        if token and token != self.token:
            self.leader_since = self._clock()
            logger.info("Sampler lease taken", extra={"node": self._store.node_id, "token": token})
        self.token = token

    async def sample_view(self) -> dict[str, RoomCounts] | None:
        """Every room's global counts while this node leads sampling; None otherwise."""
        if not self._health.healthy or not self.token:
            return None
        try:
            return await self._store.all_counts()
        except REDIS_FAILURES as error:
            self._health.degrade(error)
            return None

    async def fence(self, snapshots: list[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """The snapshots this node may queue: none unless it still holds the lease with its token.

        A snapshot is marked ``partial`` when a node died, or this node took the lease, after its
        interval began (its samples then miss some viewers or part of the interval).
        """
        if not snapshots:
            return snapshots
        token = self.token
        try:
            ok, last_death = await self._store.fence(token) if token else (False, 0.0)
        except REDIS_FAILURES as error:
            self._health.degrade(error)
            ok, last_death = False, 0.0
        if not ok:
            logger.error(
                "Snapshots not queued: this node no longer holds the sampler lease",
                extra={"node": self._store.node_id, "snapshots": len(snapshots)},
            )
            return []
        return [
            replace(s, partial=True)
            if s.partial or last_death >= s.minute_start or self.leader_since > s.minute_start
            else s
            for s in snapshots
            # A stopping leader closed this interval itself (hand_over); it reached the outbox there.
            if s.minute_start > self.handed_over
        ]

    def hand_over(self, snapshots: list[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """The partial interval a stopping node may queue, closed from its own samples: only while it
        holds the sampler lease, and not an interval a previous leader already closed on its stop.

        The interval is recorded in Redis as the lease is given up (the node's ``close``), atomically,
        so the next leader does not send it again. Synchronous: the app's shutdown must not wait for
        Redis to close the interval (a Redis outage means no lease, and nothing is queued).
        """
        if not self._health.healthy or not self.token:
            return []
        kept = [s for s in snapshots if s.minute_start > self.handed_over]
        if kept:
            self.closed_interval = max(s.minute_start for s in kept)
        return kept
