"""The sampling loop: on every wall-clock tick, sample all rooms and queue closed intervals."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from socket_gateway.clock import Clock
from socket_gateway.live.rooms import EMPTY, RoomCounts, RoomRegistry
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator
from socket_gateway.snapshots.outbox import Outbox

if TYPE_CHECKING:
    from socket_gateway.cluster.node import ClusterNode

logger = logging.getLogger(__name__)


class Sampler:
    """Drives the aggregator from the clock and hands what it closes to the outbox.

    With a ``cluster``, only the node holding the sampler lease samples, from the global counts, and
    its snapshots reach the outbox only after the lease's fencing token is checked: one snapshot per
    auction-minute across the cluster.
    """

    def __init__(
        self,
        registry: RoomRegistry,
        aggregator: SnapshotAggregator,
        schedule: SampleSchedule,
        outbox: Outbox,
        clock: Clock,
        metrics: GatewayMetrics,
        cluster: ClusterNode | None = None,
    ) -> None:
        self._registry = registry
        self._aggregator = aggregator
        self._schedule = schedule
        self._outbox = outbox
        self._clock = clock
        self._metrics = metrics
        self._cluster = cluster
        self._last_view: dict[str, RoomCounts] | None = None
        self._last_tick: float | None = None
        self._finished = False
        self._ticks = asyncio.Condition()

    async def run(self) -> None:
        """Samples on every tick until cancelled or finished."""
        while not self._finished:
            now = self._clock.time()
            # Never a tick twice: the clock may read a hair before the tick just handled.
            tick = self._schedule.next_tick(now if self._last_tick is None else max(now, self._last_tick))
            await self._clock.sleep_until(tick)
            if self._finished:
                return
            self._last_tick = tick
            if self._cluster is None:
                self._queue(
                    self._aggregator.sample(tick, self._registry.active_rooms(), self._registry.counts)
                )
            else:
                await self._sample_cluster(tick, self._cluster)
            self._metrics.samples_total += 1
            async with self._ticks:
                self._ticks.notify_all()

    async def _sample_cluster(self, tick: float, cluster: ClusterNode) -> None:
        view = await cluster.sample_view()
        self._last_view = view
        if view is None:
            # Not the leader (or Redis is down): another node samples, or nobody can prove it may.
            self._aggregator.discard()
            return
        closed = self._aggregator.sample(tick, view, lambda auction_id: view.get(auction_id, EMPTY))
        self._queue(await cluster.fence(closed))

    async def wait_for_samples(self, total: int) -> None:
        """Returns once ``total`` ticks have been sampled since start (tests step the clock with it)."""
        async with self._ticks:
            await self._ticks.wait_for(lambda: self._metrics.samples_total >= total)

    def finish(self) -> list[MinuteSnapshot]:
        """Closes the current interval as ``partial`` with a last sample taken now, and stops sampling."""
        if self._finished:
            return []
        self._finished = True
        if self._cluster is None:
            snapshots = self._aggregator.finish(
                self._clock.time(), self._registry.active_rooms(), self._registry.counts
            )
        elif self._last_view is not None:
            # The leader closes the interval itself, from its last global sample (finishing must not
            # wait for Redis), whether other nodes live on or not: the cluster records it as the lease
            # is given up, so the next leader does not send it again.
            view = self._last_view
            snapshots = self._cluster.hand_over(
                self._aggregator.finish(
                    self._clock.time(), view, lambda auction_id: view.get(auction_id, EMPTY)
                )
            )
        else:
            snapshots = []
        self._queue(snapshots)
        logger.info("Partial interval closed", extra={"snapshots": len(snapshots)})
        return snapshots

    def _queue(self, snapshots: list[MinuteSnapshot]) -> None:
        if snapshots:
            self._outbox.offer(snapshots)
