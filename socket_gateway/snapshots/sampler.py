"""The sampling loop: on every wall-clock tick, sample all rooms and queue closed intervals."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from socket_gateway.clock import Clock
from socket_gateway.live.rooms import RoomRegistry
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator
from socket_gateway.snapshots.outbox import Outbox

logger = logging.getLogger(__name__)


class SamplingStrategy(Protocol):
    """Where a sample's counts come from, and which closed snapshots may be queued.

    Two implementations, chosen in the app's wiring: ``LocalSampling`` (one gateway alone) and
    ``socket_gateway.cluster.sampling.ClusterSampling`` (with ``REDIS_URL``).
    """

    async def sample(self, tick: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        """Takes the sample of ``tick`` into ``aggregator``; the snapshots it closed that may be queued."""
        ...

    def finish(self, now: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        """Closes the current interval as ``partial`` with a last sample at ``now`` (never waits)."""
        ...


class LocalSampling:
    """This gateway's own rooms, every one of them: the gateway runs alone."""

    def __init__(self, registry: RoomRegistry) -> None:
        self._registry = registry

    async def sample(self, tick: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        return aggregator.sample(tick, self._registry.active_rooms(), self._registry.counts)

    def finish(self, now: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        return aggregator.finish(now, self._registry.active_rooms(), self._registry.counts)


class Sampler:
    """Drives the aggregator from the clock and hands what the strategy lets through to the outbox."""

    def __init__(
        self,
        strategy: SamplingStrategy,
        aggregator: SnapshotAggregator,
        schedule: SampleSchedule,
        outbox: Outbox,
        clock: Clock,
        metrics: GatewayMetrics,
    ) -> None:
        self._strategy = strategy
        self._aggregator = aggregator
        self._schedule = schedule
        self._outbox = outbox
        self._clock = clock
        self._metrics = metrics
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
            self._queue(await self._strategy.sample(tick, self._aggregator))
            self._metrics.samples_total += 1
            async with self._ticks:
                self._ticks.notify_all()

    async def wait_for_samples(self, total: int) -> None:
        """Returns once ``total`` ticks have been sampled since start (tests step the clock with it)."""
        async with self._ticks:
            await self._ticks.wait_for(lambda: self._metrics.samples_total >= total)

    def finish(self) -> list[MinuteSnapshot]:
        """Closes the current interval as ``partial`` with a last sample taken now, and stops sampling."""
        if self._finished:
            return []
        self._finished = True
        snapshots = self._strategy.finish(self._clock.time(), self._aggregator)
        self._queue(snapshots)
        logger.info("Partial interval closed", extra={"snapshots": len(snapshots)})
        return snapshots

    def _queue(self, snapshots: list[MinuteSnapshot]) -> None:
        if snapshots:
            self._outbox.offer(snapshots)
