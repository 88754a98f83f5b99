"""Stopping a task for certain: cancelled again until it has ended.

On Python 3.11, ``asyncio.wait_for`` returns its awaitable's result when a cancellation of the
waiting task arrives just as that awaitable finishes, and the cancellation is lost (CPython
gh-86296, fixed in 3.12 where ``wait_for`` is built on ``asyncio.timeout``). Libraries call it on
every I/O (redis-py on each command it sends), so a long-lived loop that catches their errors and
goes round again can take one ``cancel()`` and carry on as if it never came: seen in the gateway's
cluster heartbeat under load, whose stop then waited for ever. Every stop of a long-lived task goes
through :func:`cancel_and_wait`, which cancels again until the task has ended.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

# How long a cancelled task may take to end before it is cancelled again: a task that handles its
# cancellation (closing a stream, say) gets this long to do it each time.
RECANCEL_AFTER_SECONDS = 1.0


async def cancel_and_wait(
    *tasks: asyncio.Task[object], recancel_after: float = RECANCEL_AFTER_SECONDS
) -> None:
    """Cancels each task and returns once all have ended, cancelling again any that goes on.

    Their outcomes are collected (never "exception was never retrieved"); a task that swallowed a
    cancellation is logged once, with its name.
    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    rounds = 0
    while pending:
        _, pending = await asyncio.wait(pending, timeout=recancel_after)
        rounds += 1
        for task in pending:
            if rounds == 1:
                logger.warning(
                    "A task went on after being cancelled; cancelling it again",
                    extra={"task": task.get_name()},
                )
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: whatever it ended with was handled (or logged) by its owner


def raise_if_cancel_requested() -> None:
    """Ends the current task if a cancellation was requested of it and lost on the way.

    For a loop that catches its library's errors and goes round again, when whoever cancels it
    does not wait for it to end (a subscription's last subscriber leaving, say): called once per
    round, the loop ends after one ``cancel()`` even if that cancellation was swallowed.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
