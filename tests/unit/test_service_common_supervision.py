"""RateLimitedLog and Supervisor: what a flood of one cause logs, and how a failing task is kept going."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service_common.log_limits import RateLimitedLog
from service_common.supervision import Supervisor
from tests.support import FakeClock


def test_one_line_per_cause_per_window_then_the_count_of_what_was_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1000.0)
    limited = RateLimitedLog(logging.getLogger("test.limited"), interval_seconds=10.0, clock=clock)
    with caplog.at_level(logging.INFO, "test.limited"):
        for _ in range(1000):
            limited.warning("unknown_event", "Unknown event dropped")
            limited.warning("bad_token", "Bad token")
        clock.advance(10.0)
        limited.warning("unknown_event", "Unknown event dropped")
    lines = [(record.getMessage(), getattr(record, "suppressed", 0)) for record in caplog.records]
    assert lines == [("Unknown event dropped", 0), ("Bad token", 0), ("Unknown event dropped", 999)]
    assert limited.suppressed_total == 999 + 999


def test_the_table_of_causes_stays_bounded() -> None:
    limited = RateLimitedLog(logging.getLogger("test.limited"))
    for index in range(5000):
        limited.info(f"cause-{index}", "line")
    assert len(limited._causes) <= 1024


async def test_a_failing_task_is_restarted_counted_and_unhealthy_until_it_runs_stably(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    supervisor = Supervisor(initial_backoff_seconds=0.001, max_backoff_seconds=0.001, clock=clock)
    attempts = 0
    settled = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise OSError(f"disk full #{attempts}")
        settled.set()
        await asyncio.Event().wait()

    supervisor.start("writer", flaky)
    await asyncio.wait_for(settled.wait(), 5)
    (health,) = supervisor.health()
    assert (health.failures_total, health.consecutive_failures) == (3, 3)
    assert health.last_error == "OSError: disk full #3"
    assert [task.name for task in supervisor.unhealthy()] == ["writer"]
    clock.advance(5.0)
    assert supervisor.unhealthy() == []
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1, "the cause is logged with its traceback once per failing streak"
    await supervisor.stop()


async def test_a_task_that_returns_is_done_and_not_restarted() -> None:
    supervisor = Supervisor(initial_backoff_seconds=0.001)
    runs = 0
    finished = asyncio.Event()

    async def once() -> None:
        nonlocal runs
        runs += 1
        finished.set()

    supervisor.start("once", once)
    await asyncio.wait_for(finished.wait(), 5)
    for _ in range(10):
        await asyncio.sleep(0.002)
    assert runs == 1
    assert supervisor.unhealthy() == []
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.start("once", once)
    await supervisor.stop()


async def test_a_caller_can_report_failures_its_own_way_with_the_delay_before_each_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[tuple[str, int, str, float]] = []
    supervisor = Supervisor(
        initial_backoff_seconds=0.001,
        max_backoff_seconds=0.004,
        report_failure=lambda health, error, delay: reported.append(
            (health.name, health.consecutive_failures, str(error), delay)
        ),
    )
    attempts = 0
    settled = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 4:
            raise OSError(f"exit #{attempts}")
        settled.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.DEBUG, "service_common.supervision"):
        supervisor.start("child", flaky)
        await asyncio.wait_for(settled.wait(), 5)
    assert [(name, count, error) for name, count, error, _ in reported] == [
        ("child", 1, "exit #1"),
        ("child", 2, "exit #2"),
        ("child", 3, "exit #3"),
        ("child", 4, "exit #4"),
    ]
    # Doubling from the first delay up to the largest, each with at most 20% jitter.
    for (_, _, _, delay), base in zip(reported, (0.001, 0.002, 0.004, 0.004), strict=True):
        assert base <= delay <= base * 1.2
    assert caplog.records == [], "the reporter replaces the default log lines"
    await supervisor.stop()
