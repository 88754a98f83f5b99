"""Turning each room's samples over one snapshot interval (the "minute") into one snapshot."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service_common.timing import SnapshotTiming
from service_common.viewer_snapshot import Snapshot
from socket_gateway.live.rooms import EMPTY, RoomCounts

# The record shared with the ingest service (service_common.viewer_snapshot), under the name the
# gateway's parts use for it.
MinuteSnapshot = Snapshot


class SampleSchedule:
    """When samples are taken: on wall-clock ticks within each interval, the last on its end.

    The interval starting at ``S`` (a multiple of the interval length ``I``) owns the ticks
    ``S + min(k·s, I)`` for ``k = 1..ceil(I/s)``: the sample taken on the boundary closes the
    interval, so the snapshot's end-of-interval count is one of its own samples and always lies
    within ``[min, peak]``, and an interval never holds more samples than the ingest allows.
    """

    def __init__(self, timing: SnapshotTiming) -> None:
        self.interval = timing.snapshot_interval_seconds
        self.step = timing.sample_interval_seconds
        self.samples_per_interval = timing.max_samples_per_snapshot

    def interval_of(self, tick: float) -> int:
        """The start of the interval that owns a sample taken at ``tick`` (``S < tick <= S + I``)."""
        return math.ceil(tick / self.interval) * self.interval - self.interval

    def next_tick(self, after: float) -> int:
        """The first tick strictly after ``after``."""
        start = int(after // self.interval) * self.interval
        steps_done = int((after - start) // self.step)
        return start + min((steps_done + 1) * self.step, self.interval)

    def closes_interval(self, tick: float) -> bool:
        return tick % self.interval == 0


@dataclass(slots=True)
class _RoomSamples:
    count: int = 0
    total: int = 0
    peak: int = 0
    minimum: int = 0
    last: RoomCounts = EMPTY

    def add(self, counts: RoomCounts) -> None:
        viewers = counts.viewer_count
        if self.count == 0:
            self.peak = self.minimum = viewers
        else:
            self.peak = max(self.peak, viewers)
            self.minimum = min(self.minimum, viewers)
        self.count += 1
        self.total += viewers
        self.last = counts


class SnapshotAggregator:
    """Collects samples per room and closes intervals into snapshots.

    A room is tracked from its first sample on. A room that was empty in every sample of an
    interval sends that all-zero snapshot as its last one and is then forgotten, so the state
    held here is bounded by the rooms active within the last two intervals.
    """

    def __init__(self, schedule: SampleSchedule, gateway_id: str) -> None:
        self._schedule = schedule
        self._gateway_id = gateway_id
        self._interval_start: int | None = None
        self._last_sample: float | None = None
        self._samples: dict[str, _RoomSamples] = {}
        self._tracked: set[str] = set()

    @property
    def tracked_rooms(self) -> int:
        return len(self._tracked)

    def sample(
        self,
        tick: float,
        active_rooms: Iterable[str],
        counts_of: Callable[[str], RoomCounts],
    ) -> list[MinuteSnapshot]:
        """Samples every tracked and active room at ``tick``; returns the snapshots of closed intervals.

        An interval whose closing tick was missed (the loop was stalled past it) is closed by
        the first later sample, with the samples it did get.
        """
        closed: list[MinuteSnapshot] = []
        interval_start = self._schedule.interval_of(tick)
        if self._interval_start is not None and self._interval_start < interval_start:
            closed += self._close(partial=False)
        self._interval_start = interval_start
        self._last_sample = tick
        self._tracked.update(active_rooms)
        for auction_id in self._tracked:
            samples = self._samples.get(auction_id)
            if samples is None:
                samples = self._samples[auction_id] = _RoomSamples()
            samples.add(counts_of(auction_id))
        if self._schedule.closes_interval(tick):
            closed += self._close(partial=False)
        return closed

    def discard(self) -> None:
        """Forgets the current interval's samples (a node that stopped leading the cluster's sampling)."""
        self._samples.clear()
        self._tracked.clear()
        self._interval_start = None

    def finish(
        self,
        now: float,
        active_rooms: Iterable[str],
        counts_of: Callable[[str], RoomCounts],
    ) -> list[MinuteSnapshot]:
        """Takes a last sample at ``now`` and closes the interval it falls in as ``partial``.

        A ``now`` at or before the last sample (the wall clock can read a hair before the tick the
        sampler just took) takes no new sample: it would reopen an interval that tick closed and
        send that interval twice. The interval still open, if any, is closed as it stands.
        """
        if self._last_sample is not None and now <= self._last_sample:
            closed = []
        else:
            closed = self.sample(now, active_rooms, counts_of)
        if self._interval_start is not None:
            closed += self._close(partial=True)
        return closed

    def _close(self, *, partial: bool) -> list[MinuteSnapshot]:
        start = self._interval_start
        assert start is not None
        snapshots = []
        for auction_id, samples in self._samples.items():
            snapshots.append(
                MinuteSnapshot(
                    auction_id=auction_id,
                    minute_start=start,
                    viewer_count=samples.last.viewer_count,
                    avg_viewers=samples.total / samples.count,
                    peak_viewers=samples.peak,
                    min_viewers=samples.minimum,
                    sample_count=samples.count,
                    unique_viewers=samples.last.unique_viewers,
                    partial=partial,
                    gateway_id=self._gateway_id,
                )
            )
            if samples.peak == 0:
                self._tracked.discard(auction_id)
        self._samples.clear()
        self._interval_start = None
        return snapshots
