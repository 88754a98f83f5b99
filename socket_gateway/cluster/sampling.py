"""The sampler's cluster strategy: each node samples the rooms it owns, the minutes kept in Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from socket_gateway.cluster.death_watch import DeathWatch
from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.outage import OutageBuffer
from socket_gateway.cluster.sampler_lease import SamplerLease
from socket_gateway.cluster.store import REDIS_FAILURES, MinuteSamples, RedisCounts
from socket_gateway.live.rooms import RoomCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator

logger = logging.getLogger(__name__)


def snapshot(
    auction_id: str, minute: MinuteSamples, gateway_id: str, partial: bool = False
) -> MinuteSnapshot:
    """The snapshot of one room's minute as Redis held its samples."""
    return MinuteSnapshot(
        auction_id=auction_id,
        minute_start=minute.minute_start,
        viewer_count=minute.last.viewer_count,
        avg_viewers=minute.total / minute.samples,
        peak_viewers=minute.peak,
        min_viewers=minute.minimum,
        sample_count=minute.samples,
        unique_viewers=minute.last.unique_viewers,
        partial=partial or minute.partial,
        gateway_id=gateway_id,
        samples=minute.values,
    )


class ClusterSampling:
    """Samples the rooms this node owns (``SamplerLease.owned``), in Redis, one script per room.

    Each sample goes into the room's minute in Redis (``sample.lua``), fenced by the room's owner, so
    every minute is closed once, by whichever node owns the room at its end, and a node's death loses
    no minute: the next owner finds the samples. The owner also tells a quiet room its counts again
    (``tell``). ``finish`` (a graceful stop) closes the node's open minutes itself, partial; the rooms
    pass to the other nodes as it leaves, from the next minute on. A closed minute waits in a
    ``DeathWatch`` until no member's death can still touch it (partial if one did). While Redis
    fails, ``outage`` keeps this node's own samples and hands them over once Redis answers.

    Args:
        lease: the rooms this node owns.
        store: the Redis adapter.
        health: whether Redis holds this node's counts.
        schedule: when samples are taken.
        gateway_id: the id the snapshots carry.
        interval_ms: the publish interval (a refresh takes the room's publish lock for it).
        tell: sends a room its counts (``RoomPublisher.tell``).
    """

    def __init__(
        self,
        lease: SamplerLease,
        store: RedisCounts,
        health: NodeHealth,
        schedule: SampleSchedule,
        gateway_id: str,
        interval_ms: int,
        tell: Callable[[str, RoomCounts], Coroutine[Any, Any, None]],
        outage: OutageBuffer | None = None,
    ) -> None:
        self._lease = lease
        # This node's own samples while Redis fails, handed over when it answers (none: not kept).
        self._outage = outage
        self._store = store
        self._health = health
        self._schedule = schedule
        self._gateway_id = gateway_id
        self._interval_ms = interval_ms
        self._tell = tell
        # The open minute of each owned room as the last sample left it, the room's counts then and
        # the minute a previous owner closed itself (this node skips its rest): for a stop.
        self._open: dict[str, MinuteSamples] = {}
        self._counts: dict[str, RoomCounts] = {}
        self._skipped: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Closed minutes wait there until no member's death can still touch them (then partial if one did).
        self._deaths = DeathWatch(store, schedule.interval, store.lease_ms / 3000)

    async def sample(self, tick: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        # The samples live in Redis, not in the aggregator (which a node alone uses).
        aggregator.discard()
        if not self._health.healthy:
            self._open.clear()
            if self._outage is not None:
                self._outage.sample_locally(tick)
            return []
        try:
            recovered = await self._outage.after_recovery() if self._outage is not None else []
        except REDIS_FAILURES as error:
            self._health.degrade(error)
            return []
        try:
            await self._lease.take_handed()
            rooms = sorted(self._lease.owned)
            results = await self._store.sample(
                rooms,
                int(tick),
                self._schedule.interval_of(tick),
                self._schedule.closes_interval(tick),
                self._interval_ms,
                self._schedule.slot_of(tick),
            )
        except REDIS_FAILURES as error:
            self._health.degrade(error)
            # The tick Redis failed on is this node's own too (a minute's close may fall on it).
            if self._outage is not None:
                self._outage.sample_locally(tick)
            return recovered
        closed: list[MinuteSnapshot] = []
        dropped: list[str] = []
        minute_start = self._schedule.interval_of(tick)
        for auction_id, result in zip(rooms, results, strict=True):
            closed += [snapshot(auction_id, minute, self._gateway_id) for minute in result.closed]
            self._counts[auction_id] = result.counts
            if result.owned and not result.closed and result.current is None and not result.gone:
                # The tick was not taken: a previous owner closed this minute as it stopped.
                self._skipped[auction_id] = minute_start
            else:
                self._skipped.pop(auction_id, None)
            if result.current is not None:
                self._open[auction_id] = result.current
            elif result.closed or not result.owned:
                self._open.pop(auction_id, None)
            if not result.owned or result.gone:
                dropped.append(auction_id)
                self._counts.pop(auction_id, None)
                self._skipped.pop(auction_id, None)
            if result.publish:
                self._spawn(self._tell(auction_id, result.counts))
        if dropped:
            self._lease.disowned(dropped)
            try:
                await self._store.disown(dropped)
            except REDIS_FAILURES as error:
                self._health.degrade(error)
        try:
            return recovered + await self._deaths.settle(closed)
        except REDIS_FAILURES as error:
            self._health.degrade(error)
            return recovered

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def finish(self, now: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        # Finishing must not wait for Redis: the open minutes are closed from their samples so far,
        # and recorded as closed when the node leaves (ClusterNode.close), so the next owner of each
        # room goes on from the next minute and no minute is sent twice. The closed minutes still held
        # back go too, partial.
        held = self._deaths.release()
        if not self._health.healthy:
            return held
        minute_start = self._schedule.interval_of(now)
        snapshots = []
        for auction_id in self._lease.owned:
            minute = self._open.get(auction_id)
            if minute is None or minute.minute_start != minute_start:
                minute = self._fresh_minute(auction_id, minute_start)
            if minute is not None and minute.samples:
                snapshots.append(snapshot(auction_id, minute, self._gateway_id, partial=True))
        self._lease.closed_on_stop = {s.auction_id: s.minute_start for s in snapshots}
        self._open.clear()
        return held + snapshots

    def _fresh_minute(self, auction_id: str, minute_start: int) -> MinuteSamples | None:
        """A minute this node has not sampled yet, from the room's last counts (as a node alone closes
        its interval with a last sample at its stop); none if a previous owner closed it."""
        counts = self._counts.get(auction_id)
        if counts is None or self._skipped.get(auction_id) == minute_start:
            return None
        viewers = counts.viewer_count
        return MinuteSamples(minute_start, 1, viewers, viewers, viewers, counts, True)
