"""The minute aggregation, property-tested: any sequence of samples against an independent oracle.

Hypothesis draws an interval and a sample step, three rooms whose counts change before any tick,
ticks on the schedule with some skipped (a stalled loop), an occasional ``discard`` (a node that
stopped leading the cluster's sampling) and the ``finish`` of SIGTERM at a random moment from a hair
before the last tick to the next one. The aggregator reads counts through ``counts_of``, so the test
records every sample it took and recomputes every snapshot from those samples alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import event, given, settings
from hypothesis import strategies as st

from service_common.timing import SnapshotTiming
from socket_gateway.live.rooms import EMPTY, RoomCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator

T0 = 1_800_000_000
ROOMS = ("a1", "a2", "a3")
TICK_BYTES = 1 + len(ROOMS)
# Scheduled ticks skipped before a tick, by the low three bits of its first byte: mostly none.
SKIPPED = (0, 0, 0, 0, 0, 1, 2, 3)


@dataclass(frozen=True)
class Tick:
    """Before the tick: counts set for some rooms (0 viewers: the room is gone); after it, maybe a discard."""

    changes: dict[str, RoomCounts]
    skipped: int
    discard_after: bool


@dataclass(frozen=True)
class Scenario:
    interval: int
    step: int
    ticks: list[Tick]
    # Where ``finish`` falls, as a fraction of the way from the last tick to the next scheduled one;
    # negative: the wall clock read a hair before the tick the sampler just took.
    finish_offset: float


def decode(raw: bytes) -> Scenario:
    """A scenario from bytes: drawing one ``binary`` keeps 1,000 cases within about a second.

    Bytes 0 to 2: interval, step, finish offset; then ``TICK_BYTES`` per tick: a control byte (skipped
    ticks, discard) and a byte per room (change flag, viewers; unique viewers are only passed
    through, so any value up to the viewers will do).
    """
    interval = 1 + raw[0] % 20
    step = 1 + raw[1] % interval
    ticks = []
    for at in range(3, len(raw) - TICK_BYTES + 1, TICK_BYTES):
        control, *rooms = raw[at : at + TICK_BYTES]
        changes = {}
        for auction_id, room in zip(ROOMS, rooms, strict=True):
            if room & 1:
                viewers = max(0, (room >> 1) - 60)  # 0 about half the time, else 1..67
                changes[auction_id] = RoomCounts(viewers, max(0, viewers - control % 5))
        ticks.append(Tick(changes, SKIPPED[control & 7], control >> 3 == 31))
    # A quarter of the finishes a hair before the last tick, a quarter exactly on it.
    finish_offset = -0.001 if raw[2] % 4 == 0 else 0.0 if raw[2] % 4 == 1 else raw[2] / 255
    return Scenario(interval, step, ticks, finish_offset)


scenarios = (
    st.integers(1, 40)
    .flatmap(lambda ticks: st.binary(min_size=3 + ticks * TICK_BYTES, max_size=3 + ticks * TICK_BYTES))
    .map(decode)
)


@dataclass
class Run:
    """What the aggregator did: the samples it read (through ``counts_of``) and the snapshots it closed."""

    samples: list[tuple[float, str, RoomCounts]] = field(default_factory=list)
    discarded: set[int] = field(default_factory=set)  # indices into ``samples``
    snapshots: list[MinuteSnapshot] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)
    active_at: dict[float, set[str]] = field(default_factory=dict)
    finish_at: float = 0.0


def run(scenario: Scenario, schedule: SampleSchedule) -> Run:
    aggregator = SnapshotAggregator(schedule, "gw-p")
    rooms: dict[str, RoomCounts] = {}
    record = Run()

    def counts_at(moment: float) -> tuple[list[str], Callable[[str], RoomCounts]]:
        def counts_of(auction_id: str) -> RoomCounts:
            room = rooms.get(auction_id, EMPTY)
            record.samples.append((moment, auction_id, room))
            return room

        return list(rooms), counts_of

    now: float = T0 + 0.5
    for tick in scenario.ticks:
        for auction_id, room in tick.changes.items():
            if room.viewer_count:
                rooms[auction_id] = room
            else:
                rooms.pop(auction_id, None)
        for _ in range(tick.skipped + 1):
            now = schedule.next_tick(now)
        record.ticks.append(now)
        record.active_at[now] = set(rooms)
        active, counts_of = counts_at(now)
        record.snapshots += aggregator.sample(now, active, counts_of)
        if tick.discard_after:
            # Only the samples of the interval still open are forgotten; a closed one was returned.
            open_interval = None if schedule.closes_interval(now) else schedule.interval_of(now)
            record.discarded |= {
                i for i, (t, _, _) in enumerate(record.samples) if schedule.interval_of(t) == open_interval
            }
            aggregator.discard()

    record.finish_at = now + scenario.finish_offset * (schedule.next_tick(now) - now)
    active, counts_of = counts_at(record.finish_at)
    record.snapshots += aggregator.finish(record.finish_at, active, counts_of)
    return record


def first_tick_at_or_after(moment: float, start: int, schedule: SampleSchedule) -> int:
    """The k of the interval's first tick ``start + min(k·s, I)`` at or after ``moment``, counted out."""
    k = 1
    while start + min(k * schedule.step, schedule.interval) < moment:
        k += 1
    return k


def bucket(n: int) -> str:
    return "0" if n == 0 else "1-9" if n < 10 else "10-29" if n < 30 else "30+"


@settings(max_examples=1000, deadline=None)
@given(scenarios)
def test_any_sequence_of_samples_closes_into_snapshots_that_hold_exactly_those_samples(
    scenario: Scenario,
) -> None:
    schedule = SampleSchedule(SnapshotTiming(scenario.interval, scenario.step))
    record = run(scenario, schedule)
    event(f"snapshots: {bucket(len(record.snapshots))}")
    event(f"ticks: {bucket(len(record.ticks))}")
    offset = scenario.finish_offset
    event(f"finish: {'before' if offset < 0 else 'on' if offset == 0 else 'after'} the last tick")

    # The oracle: the samples not discarded, grouped by room and the interval their moment falls in.
    groups: dict[tuple[str, int], list[tuple[float, RoomCounts]]] = defaultdict(list)
    for i, (moment, auction_id, room) in enumerate(record.samples):
        if i not in record.discarded:
            groups[(auction_id, schedule.interval_of(moment))].append((moment, room))

    keys = [(s.auction_id, s.minute_start) for s in record.snapshots]
    assert len(keys) == len(set(keys)), "an (auction, interval) closed twice"
    assert set(keys) == set(groups), "samples left out of every snapshot, or a snapshot of none"
    assert sum(s.sample_count for s in record.snapshots) == len(record.samples) - len(record.discarded)

    # ``finish`` closes as partial the interval still open at the later of its moment and the last tick.
    end = max(record.finish_at, record.ticks[-1])
    final_interval = None if schedule.closes_interval(end) else schedule.interval_of(end)
    for snapshot in record.snapshots:
        taken = groups[(snapshot.auction_id, snapshot.minute_start)]
        viewers = [room.viewer_count for _, room in taken]
        last = max(taken, key=lambda sample: sample[0])[1]
        # What the ingest service validates (ingest_service/validation.py), and exactly which values.
        assert 1 <= snapshot.sample_count == len(taken) <= schedule.samples_per_interval
        assert snapshot.min_viewers <= snapshot.avg_viewers <= snapshot.peak_viewers
        assert snapshot.min_viewers <= snapshot.viewer_count <= snapshot.peak_viewers
        assert snapshot.unique_viewers <= snapshot.viewer_count
        assert (snapshot.min_viewers, snapshot.peak_viewers) == (min(viewers), max(viewers))
        assert snapshot.avg_viewers == sum(viewers) / len(viewers)
        assert (snapshot.viewer_count, snapshot.unique_viewers) == (last.viewer_count, last.unique_viewers)
        assert snapshot.minute_start % scenario.interval == 0
        assert snapshot.partial == (snapshot.minute_start == final_interval)
        assert snapshot.gateway_id == "gw-p"
        # The samples themselves, oldest first, when sample i was taken on the interval's tick i + 1
        # (the last may come before its tick: finish's); otherwise none, the aggregates stand alone.
        moments = sorted(moment for moment, _ in taken)
        on_ticks = all(
            first_tick_at_or_after(moment, snapshot.minute_start, schedule) == i + 1
            for i, moment in enumerate(moments)
        )
        assert snapshot.samples == (tuple(viewers) if on_ticks else ()), (moments, snapshot)
        event(f"samples: {'carried' if snapshot.samples else 'left out'}")

    # Which rooms are sampled: the active ones and those still tracked. A room is tracked from its
    # first sample until an interval in which all its samples were empty closes; a discard forgets
    # every room (the documented rule, modelled here tick by tick).
    sampled: dict[float, dict[str, int]] = defaultdict(dict)
    for moment, auction_id, room in record.samples:
        assert auction_id not in sampled[moment], "a room sampled twice at one moment"
        sampled[moment][auction_id] = room.viewer_count
    tracked: set[str] = set()
    open_samples: dict[str, list[int]] = defaultdict(list)
    current: int | None = None

    def close() -> None:
        tracked.difference_update(a for a, viewers in open_samples.items() if not any(viewers))
        open_samples.clear()

    for moment, tick in zip(record.ticks, scenario.ticks, strict=True):
        if current is not None and schedule.interval_of(moment) != current:
            close()
        current = schedule.interval_of(moment)
        tracked |= record.active_at[moment]
        assert sampled[moment].keys() == tracked, "rooms sampled are not the active and tracked ones"
        for auction_id, count in sampled[moment].items():
            open_samples[auction_id].append(count)
        if schedule.closes_interval(moment):
            close()
            current = None
        if tick.discard_after:
            tracked.clear()
            open_samples.clear()
            current = None
