"""A node's own samples while Redis is unreachable, handed over through Redis once it answers again."""

from __future__ import annotations

import time
from collections.abc import Callable

from socket_gateway.cluster.store import RedisCounts
from socket_gateway.live.rooms import RoomRegistry
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator

# Outage minutes a node keeps, at the most (the rest, the oldest, are dropped): an outage of up to
# this many intervals loses no minute.
KEPT_INTERVALS = 15


class OutageBuffer:
    """While Redis fails, the node samples its own sockets' counts (``sample_locally``), as a node
    alone does; once Redis answers it hands each minute closed meanwhile to Redis, beside the other
    nodes' shares of it (``after_recovery``), and a lease later one node per room-minute merges the
    shares into the minute's snapshot, ``partial``: connections add up across nodes (exact when every
    node sampled the same ticks), distinct viewers are the sum of the nodes' (a viewer on two nodes
    counted twice), and a node that never came back is missing. A minute the cluster closed in Redis
    itself (its samples survived the outage) is not sent again.

    Args:
        store: the Redis adapter.
        registry: this node's sockets.
        schedule: when samples are taken.
        gateway_id: the id the snapshots carry.
        grace_seconds: how long after its own return a node waits for the others' shares (a lease:
            every node is back within a heartbeat of Redis).
        clock: a monotonic clock.
    """

    def __init__(
        self,
        store: RedisCounts,
        registry: RoomRegistry,
        schedule: SampleSchedule,
        gateway_id: str,
        grace_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._registry = registry
        self._interval = schedule.interval
        self._aggregator = SnapshotAggregator(schedule, gateway_id)
        self._gateway_id = gateway_id
        self._grace = grace_seconds
        self._clock = clock
        self._closed: list[MinuteSnapshot] = []
        self._handed: list[tuple[str, int]] = []
        self._merge_at = 0.0

    def sample_locally(self, tick: float) -> None:
        """A sample of this node's own rooms, while Redis fails."""
        self._closed += self._aggregator.sample(tick, self._registry.active_rooms(), self._registry.counts)
        oldest = self._aggregator_interval(tick) - KEPT_INTERVALS * self._interval
        self._closed = [s for s in self._closed if s.minute_start >= oldest]

    def _aggregator_interval(self, tick: float) -> int:
        return int(tick // self._interval) * self._interval

    async def after_recovery(self) -> list[MinuteSnapshot]:
        """On each healthy tick: hands the outage's minutes over, then (a grace later) the merged
        minutes this node won. Raises one of ``REDIS_FAILURES`` (nothing is lost: it goes on next time)."""
        if self._closed:
            handed = await self._store.hand_over_outage(self._closed)
            self._handed += [(s.auction_id, s.minute_start) for s in handed]
            self._closed = []
            self._merge_at = self._clock() + self._grace
        # The minute open at the return is the cluster's again, sampled in Redis from now on.
        self._aggregator.discard()
        if not self._handed or self._clock() < self._merge_at:
            return []
        merged = await self._store.merge_outage(self._handed, self._gateway_id)
        self._handed = []
        return merged
