"""The sampling loop: on every wall-clock tick, sample all rooms and queue closed intervals."""

from __future__ import annotations

import asyncio
import logging

from socket_gateway.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator
from socket_gateway.clock import Clock
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.outbox import Outbox
from socket_gateway.rooms import RoomRegistry

logger = logging.getLogger(__name__)


class Sampler:
    """Drives the aggregator from the clock and hands what it closes to the outbox."""

    def __init__(
        self,
        registry: RoomRegistry,
        aggregator: SnapshotAggregator,
        schedule: SampleSchedule,
        outbox: Outbox,
        clock: Clock,
        metrics: GatewayMetrics,
    ) -> None:
        self._registry = registry
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
            self._queue(self._aggregator.sample(tick, self._registry.active_rooms(), self._registry.counts))
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
        snapshots = self._aggregator.finish(
            self._clock.time(), self._registry.active_rooms(), self._registry.counts
        )
        self._queue(snapshots)
        logger.info("Partial interval closed", extra={"snapshots": len(snapshots)})
        return snapshots

    def _queue(self, snapshots: list[MinuteSnapshot]) -> None:
        if snapshots:
            self._outbox.put(snapshots)
