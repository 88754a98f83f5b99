"""A task that swallows a cancellation is still stopped (service_common.cancellation)."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys

import pytest

from service_common.cancellation import cancel_and_wait, raise_if_cancel_requested
from service_common.supervision import Supervisor

# Bounds each stop: one that never returns fails the test instead of hanging it.
STOP_WITHIN_SECONDS = 5.0


async def test_wait_for_loses_a_cancellation_that_arrives_as_its_awaitable_finishes() -> None:
    """Proves the library behaviour this module exists for: on Python 3.11, a task cancelled right
    after the future it waits on through ``asyncio.wait_for`` completed gets the result, not the
    cancellation (CPython gh-86296; 3.12 raises CancelledError)."""
    inner: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def waiting() -> str:
        return await asyncio.wait_for(inner, 10)

    task = asyncio.create_task(waiting())
    await asyncio.sleep(0)  # the task now waits in wait_for
    inner.set_result("done")
    task.cancel()
    if sys.version_info < (3, 12):
        assert await task == "done"
        assert task.cancelling() == 1, "cancelled, yet it carried on"
    else:
        with pytest.raises(asyncio.CancelledError):
            await task


async def swallowing_loop(running: asyncio.Event) -> None:
    """A loop that loses the first cancellation it gets, as one round of ``wait_for`` above does,
    and goes round again (as a heartbeat catching its library's errors does)."""
    swallowed = False
    while True:
        running.set()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again_until_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = asyncio.Event()
    task = asyncio.create_task(swallowing_loop(running))
    await running.wait()
    await asyncio.wait_for(cancel_and_wait(task, recancel_after=0.05), STOP_WITHIN_SECONDS)
    assert task.cancelled()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "A task went on after being cancelled; cancelling it again"


async def test_a_supervised_task_that_swallows_a_cancellation_is_stopped() -> None:
    """Proves that Supervisor.stop_task and stop end a task that lost one cancellation; before,
    they waited for ever (the gateway's cluster heartbeat hung its node's close under load)."""
    for stop in ("stop_task", "stop"):
        supervisor = Supervisor(initial_backoff_seconds=0.01)
        running = asyncio.Event()
        supervisor.start("heartbeat", functools.partial(swallowing_loop, running))
        await running.wait()
        stopping = supervisor.stop_task("heartbeat") if stop == "stop_task" else supervisor.stop()
        await asyncio.wait_for(stopping, STOP_WITHIN_SECONDS)


async def test_a_loop_that_checks_each_round_ends_after_one_lost_cancellation() -> None:
    """Proves raise_if_cancel_requested: a loop that swallowed the only cancel() it will get (its
    canceller does not wait for it) ends at its next round instead of going on for ever."""
    running = asyncio.Event()

    async def loop() -> None:
        swallowed = False
        while True:
            running.set()
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True
            raise_if_cancel_requested()

    task = asyncio.create_task(loop())
    await running.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN_SECONDS)
    assert done == {task}
    assert task.cancelled()
