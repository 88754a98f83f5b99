"""The ingest's per-lot timeline places each 5-second sample where the gateway took it."""

from __future__ import annotations

import pytest

from ingest_service.audience import Resolution, ViewerTimeline
from ingest_service.storage.snapshot_details import SnapshotDetail
from service_common.timing import SnapshotTiming
from socket_gateway.snapshots.aggregation import SampleSchedule


def gateway_ticks(start: int, timing: SnapshotTiming) -> list[int]:
    """The ticks of the interval starting at ``start``, as the gateway's sampler takes them."""
    schedule = SampleSchedule(timing)
    ticks = [schedule.next_tick(start)]
    while not schedule.closes_interval(ticks[-1]):
        ticks.append(schedule.next_tick(ticks[-1]))
    return ticks


def detail(start: int, samples: tuple[int, ...]) -> SnapshotDetail:
    return SnapshotDetail(
        minute_start=start,
        viewer_count=samples[-1],
        avg_viewers=sum(samples) / len(samples),
        peak_viewers=max(samples),
        min_viewers=min(samples),
        sample_count=len(samples),
        samples=samples,
        identified_sketch=b"",
        anonymous_sketch=b"",
    )


@pytest.mark.parametrize(("interval", "step"), [(60, 5), (60, 7), (60, 11), (10, 3), (7, 7), (60, 60)])
def test_each_sample_is_read_at_the_gateways_tick_that_took_it(interval: int, step: int) -> None:
    timing = SnapshotTiming(interval, step)
    start = 1_800_000_000 // interval * interval
    ticks = gateway_ticks(start, timing)
    assert len(ticks) == timing.max_samples_per_snapshot
    samples = tuple(range(100, 100 + len(ticks)))
    timeline = ViewerTimeline([detail(start, samples)], interval, step)
    assert [timeline.at(tick) for tick in ticks] == [(value, Resolution.SAMPLES) for value in samples]
