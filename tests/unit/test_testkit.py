"""The support kit's own rules: the poll loop's bound and its kinds of condition, the percentile's rank."""

from __future__ import annotations

import os

import pytest

from testkit import measure
from testkit.stats import percentile
from testkit.waiting import poll


async def test_poll_takes_plain_and_async_conditions_and_fails_naming_what_it_waited_for() -> None:
    checks: list[int] = []

    def third_time() -> bool:
        checks.append(1)
        return len(checks) >= 3

    async def never() -> bool:
        return False

    assert await poll(third_time, "three checks", within=5, every=0.001) >= 0
    assert len(checks) == 3
    with pytest.raises(AssertionError, match="timed out waiting for the impossible"):
        await poll(never, "the impossible", within=0.02, every=0.005)


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50, 95, 99)
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7


def test_cpu_and_memory_of_a_process_are_read_from_proc() -> None:
    before = measure.cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert measure.cpu_seconds(os.getpid()) > before
    assert measure.rss_kib(os.getpid()) > 1024
