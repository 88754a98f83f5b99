"""Turning each room's samples over one snapshot interval (the "minute") into one snapshot."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from service_common.timing import SnapshotTiming
from service_common.viewer_snapshot import Snapshot
from socket_gateway.live.rooms import EMPTY, RoomCounts

# The record shared with the ingest service (service_common.viewer_snapshot), under the name the
# gateway's parts use for it.
MinuteSnapshot = Snapshot

_NO_SKETCHES = (b"", b"")


class IntervalViewers(Protocol):
    """Who was seen in each room during the interval being sampled (``snapshots.seen_viewers``)."""

    def seen_rooms(self) -> Iterable[str]:
        """Rooms someone was seen in so far this interval, whether or not a sample found them occupied."""
        ...

    def close_interval(self) -> Mapping[str, tuple[bytes, bytes]]:
        """Each room's serialized ``(identified, anonymous)`` sketches of the interval closing now."""
        ...


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

    def slot_of(self, moment: float) -> int:
        """Which of its interval's ticks ``moment`` is, from 1 (the ``k`` above); between ticks, the next."""
        start = self.interval_of(moment)
        return max(1, min(math.ceil((moment - start) / self.step), self.samples_per_interval))


@dataclass(slots=True)
class _RoomSamples:
    values: list[int] = field(default_factory=list)
    total: int = 0
    peak: int = 0
    minimum: int = 0
    last: RoomCounts = EMPTY
    # Sample i was taken on the interval's tick i + 1, as the wire contract reads a snapshot's samples.
    # A room first sampled after the interval's first tick (it opened mid-interval, the gateway started
    # or took over the sampling mid-interval) or with a tick missed in between does not hold that, and
    # its snapshot carries no samples: it is read from its aggregates alone, which stay as they were.
    on_slots: bool = True

    def add(self, counts: RoomCounts, slot: int) -> None:
        viewers = counts.viewer_count
        if not self.values:
            self.peak = self.minimum = viewers
        else:
            self.peak = max(self.peak, viewers)
            self.minimum = min(self.minimum, viewers)
        if slot != len(self.values) + 1:
            self.on_slots = False
        self.values.append(viewers)
        self.total += viewers
        self.last = counts


class SnapshotAggregator:
    """Collects samples per room and closes intervals into snapshots.

    A room is tracked from its first sample on. A room that was empty in every sample of an
    interval sends that all-zero snapshot as its last one and is then forgotten, so the state
    held here is bounded by the rooms active within the last two intervals.

    With ``viewers``, each snapshot carries its room's sketches of who was seen in the interval, and a
    room someone was seen in is tracked even if no sample found it occupied (a visit between two
    ticks): its snapshot then has zero samples' counts and the visitor in its sketch.
    """

    def __init__(
        self, schedule: SampleSchedule, gateway_id: str, viewers: IntervalViewers | None = None
    ) -> None:
        self._schedule = schedule
        self._gateway_id = gateway_id
        self._viewers = viewers
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
        if self._viewers is not None:
            self._tracked.update(self._viewers.seen_rooms())
        slot = self._schedule.slot_of(tick)
        for auction_id in self._tracked:
            samples = self._samples.get(auction_id)
            if samples is None:
                samples = self._samples[auction_id] = _RoomSamples()
            samples.add(counts_of(auction_id), slot)
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
        # A room seen only after the last sample (the closing tick was missed, and someone came and
        # went before the late one) has no snapshot to carry its sketch: that visit is not counted.
        sketches = self._viewers.close_interval() if self._viewers is not None else {}
        snapshots = []
        for auction_id, samples in self._samples.items():
            identified, anonymous = sketches.get(auction_id, _NO_SKETCHES)
            snapshots.append(
                MinuteSnapshot(
                    auction_id=auction_id,
                    minute_start=start,
                    viewer_count=samples.last.viewer_count,
                    avg_viewers=samples.total / len(samples.values),
                    peak_viewers=samples.peak,
                    min_viewers=samples.minimum,
                    sample_count=len(samples.values),
                    unique_viewers=samples.last.unique_viewers,
                    partial=partial,
                    gateway_id=self._gateway_id,
                    samples=tuple(samples.values) if samples.on_slots else (),
                    identified_sketch=identified,
                    anonymous_sketch=anonymous,
                )
            )
            if samples.peak == 0:
                self._tracked.discard(auction_id)
        self._samples.clear()
        self._interval_start = None
        return snapshots
