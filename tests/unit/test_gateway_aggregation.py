"""Sampling schedule and minute aggregation, checked against hand-computed values."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service_common.timing import SnapshotTiming
from socket_gateway.live.rooms import EMPTY, RoomCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator

T0 = 1_800_000_000  # a multiple of 60: a minute boundary

SCHEDULE = SampleSchedule(SnapshotTiming(60, 5))


class Rooms:
    """Counts the test sets by hand, in the shape the aggregator reads them."""

    def __init__(self) -> None:
        self.counts: dict[str, RoomCounts] = {}

    def set(self, auction_id: str, viewers: int, unique: int | None = None) -> None:
        if viewers == 0:
            self.counts.pop(auction_id, None)
        else:
            self.counts[auction_id] = RoomCounts(viewers, viewers if unique is None else unique)

    def active(self) -> Iterable[str]:
        return list(self.counts)

    def of(self, auction_id: str) -> RoomCounts:
        return self.counts.get(auction_id, EMPTY)


def sample(aggregator: SnapshotAggregator, rooms: Rooms, tick: float) -> list[MinuteSnapshot]:
    return aggregator.sample(tick, rooms.active(), rooms.of)


def test_ticks_fall_on_wall_clock_multiples_and_the_boundary_closes_the_interval() -> None:
    assert SCHEDULE.next_tick(T0) == T0 + 5
    assert SCHEDULE.next_tick(T0 + 0.5) == T0 + 5
    assert SCHEDULE.next_tick(T0 + 55) == T0 + 60
    assert SCHEDULE.next_tick(T0 + 59.9) == T0 + 60
    assert SCHEDULE.interval_of(T0 + 60) == T0
    assert SCHEDULE.interval_of(T0 + 60.001) == T0 + 60
    assert SCHEDULE.closes_interval(T0 + 60)
    assert not SCHEDULE.closes_interval(T0 + 55)


def test_an_interval_that_the_sample_step_does_not_divide_still_ends_on_its_boundary() -> None:
    schedule = SampleSchedule(SnapshotTiming(60, 7))
    ticks = [schedule.next_tick(T0)]
    while ticks[-1] < T0 + 60:
        ticks.append(schedule.next_tick(ticks[-1]))
    assert ticks == [T0 + 7 * k for k in range(1, 9)] + [T0 + 60]
    assert len(ticks) == SnapshotTiming(60, 7).max_samples_per_snapshot


def test_a_minute_of_samples_becomes_one_snapshot() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    # Twelve samples: 3, 4, ..., 9, then 9, 8, 7, 6, 5 (the last one on the boundary).
    viewers = [3, 4, 5, 6, 7, 8, 9, 9, 8, 7, 6, 5]
    closed: list[MinuteSnapshot] = []
    for k, count in enumerate(viewers, start=1):
        rooms.set("a1", count, unique=count - 1)
        closed += sample(aggregator, rooms, T0 + 5 * k)
    assert closed == [
        MinuteSnapshot(
            auction_id="a1",
            minute_start=T0,
            viewer_count=5,
            avg_viewers=sum(viewers) / 12,
            peak_viewers=9,
            min_viewers=3,
            sample_count=12,
            unique_viewers=4,
            partial=False,
            gateway_id="gw-1",
            # Oldest first, sample i taken at T0 + 5 (i + 1): the per-lot numbers read them so.
            samples=tuple(viewers),
        )
    ]


def test_a_room_that_opens_mid_minute_counts_only_its_own_samples() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    closed: list[MinuteSnapshot] = []
    for k in range(1, 13):
        if k == 9:
            rooms.set("late", 2)
        closed += sample(aggregator, rooms, T0 + 5 * k)
    (snapshot,) = closed
    assert (snapshot.sample_count, snapshot.min_viewers, snapshot.avg_viewers) == (4, 2, 2.0)
    # Its four samples were taken on the minute's last four ticks, not its first four, where the wire
    # contract would put them: it sends none, and is read from its aggregates alone.
    assert snapshot.samples == ()


def test_a_tick_missed_inside_the_minute_leaves_the_samples_out() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    rooms.set("a1", 3)
    closed = [s for k in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12) for s in sample(aggregator, rooms, T0 + 5 * k)]
    (snapshot,) = closed
    assert (snapshot.sample_count, snapshot.samples) == (11, ())


def test_an_empty_room_sends_one_last_snapshot_after_a_whole_empty_minute_and_is_forgotten() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    rooms.set("a1", 2)
    first = [s for k in range(1, 13) for s in sample(aggregator, rooms, T0 + 5 * k)]
    rooms.set("a1", 0)
    second = [s for k in range(13, 25) for s in sample(aggregator, rooms, T0 + 5 * k)]
    third = [s for k in range(25, 37) for s in sample(aggregator, rooms, T0 + 5 * k)]
    assert [(s.minute_start, s.peak_viewers) for s in first] == [(T0, 2)]
    assert [(s.minute_start, s.peak_viewers, s.viewer_count, s.sample_count) for s in second] == [
        (T0 + 60, 0, 0, 12)
    ]
    assert third == []
    assert aggregator.tracked_rooms == 0


def test_a_room_that_empties_mid_minute_is_still_reported_for_that_minute() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    rooms.set("a1", 4)
    closed = []
    for k in range(1, 13):
        if k == 7:
            rooms.set("a1", 0)
        closed += sample(aggregator, rooms, T0 + 5 * k)
    (snapshot,) = closed
    assert (snapshot.viewer_count, snapshot.min_viewers, snapshot.peak_viewers) == (0, 0, 4)
    assert snapshot.avg_viewers == pytest.approx(4 * 6 / 12)
    assert aggregator.tracked_rooms == 1


def test_finish_closes_the_current_minute_as_partial_with_a_last_sample() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    rooms.set("a1", 2)
    for k in range(1, 4):
        assert sample(aggregator, rooms, T0 + 5 * k) == []
    rooms.set("a1", 6, unique=3)
    (snapshot,) = aggregator.finish(T0 + 17.5, rooms.active(), rooms.of)
    assert snapshot.partial
    assert (snapshot.minute_start, snapshot.sample_count) == (T0, 4)
    assert (snapshot.viewer_count, snapshot.unique_viewers, snapshot.peak_viewers) == (6, 3, 6)
    assert snapshot.avg_viewers == 3.0
    # The last sample, taken at T0 + 17.5, stands in the slot of the tick it came before (T0 + 20).
    assert snapshot.samples == (2, 2, 2, 6)


def test_a_missed_boundary_is_closed_by_the_next_sample() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    rooms.set("a1", 1)
    for k in range(1, 12):
        sample(aggregator, rooms, T0 + 5 * k)
    # The tick on the boundary (T0 + 60) never ran: the loop was stalled.
    closed = sample(aggregator, rooms, T0 + 65)
    assert [(s.minute_start, s.sample_count, s.partial) for s in closed] == [(T0, 11, False)]
    # Only the last tick is missing: the eleven samples still fall on the minute's first eleven ticks.
    assert closed[0].samples == (1,) * 11


def test_every_snapshot_satisfies_the_ingest_services_invariants() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    closed: list[MinuteSnapshot] = []
    pattern = [0, 5, 1, 9, 0, 3, 7, 7, 2, 0, 4, 8, 6]
    for k in range(1, 12 * 5 + 1):
        count = pattern[k % len(pattern)]
        rooms.set("a1", count, unique=count // 2)
        closed += sample(aggregator, rooms, T0 + 5 * k)
    assert closed
    for s in closed:
        assert 1 <= s.sample_count <= 12
        assert s.min_viewers <= s.avg_viewers <= s.peak_viewers
        assert s.min_viewers <= s.viewer_count <= s.peak_viewers
        assert s.unique_viewers <= s.viewer_count
        assert s.minute_start % 60 == 0
        # What the ingest service checks of the samples (ingest_service/sketches.py).
        assert len(s.samples) == s.sample_count
        assert (max(s.samples), min(s.samples)) == (s.peak_viewers, s.min_viewers)


# No per-example deadline: on a machine loaded by the rest of the suite one example of this pure
# function took 264 ms (hypothesis's default deadline is 200 ms), a figure of the load, not of the code.
@settings(deadline=None)
@given(
    interval=st.integers(1, 120),
    step=st.integers(1, 120),
    after=st.floats(T0 - 1000, T0 + 1000, allow_nan=False),
)
def test_next_tick_is_the_first_scheduled_tick_after_any_moment(
    interval: int, step: int, after: float
) -> None:
    step = min(step, interval)
    schedule = SampleSchedule(SnapshotTiming(interval, step))
    tick = schedule.next_tick(after)
    start = int(after // interval) * interval
    ticks = sorted(
        {
            s + min(k * step, interval)
            for s in (start - interval, start, start + interval)
            for k in range(1, 200)
        }
    )
    assert tick == next(t for t in ticks if t > after)


def test_finish_at_or_before_the_tick_that_closed_the_interval_closes_nothing_twice() -> None:
    # The wall clock can read a hair before the tick the sampler just took (asyncio's timer runs on
    # the monotonic clock): a SIGTERM then must not reopen the interval that tick closed.
    for finish_at in (T0 + 60, T0 + 59.999):
        aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
        rooms = Rooms()
        rooms.set("a1", 2)
        closed = [s for k in range(1, 13) for s in sample(aggregator, rooms, T0 + 5 * k)]
        assert [(s.minute_start, s.partial) for s in closed] == [(T0, False)]
        assert aggregator.finish(finish_at, rooms.active(), rooms.of) == []


def test_finish_at_the_moment_of_the_last_sample_closes_the_open_interval_without_a_second_sample() -> None:
    aggregator = SnapshotAggregator(SCHEDULE, "gw-1")
    rooms = Rooms()
    rooms.set("a1", 2)
    sample(aggregator, rooms, T0 + 5)
    rooms.set("a1", 4)
    (snapshot,) = aggregator.finish(T0 + 5, rooms.active(), rooms.of)
    assert (snapshot.partial, snapshot.sample_count, snapshot.viewer_count) == (True, 1, 2)
