"""The one poll loop of the tests and benchmarks, for conditions no event announces."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def poll(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, within: float, every: float = 0.05
) -> float:
    """Waits until ``condition`` holds; returns the seconds it took.

    For state with no event to await: another process's (its log file, its ``/metrics``, its store)
    or a library's inside this one. ``condition`` is called at once, then every ``every`` seconds.

    Args:
        condition: a plain or async callable, true once the wait is over.
        what: what is waited for, named in the failure.
        within: how long a condition that never holds is waited for.
        every: the pause between two checks.

    Raises:
        AssertionError: ``condition`` did not hold within ``within`` seconds.
    """
    started = time.monotonic()
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return time.monotonic() - started
        if time.monotonic() - started >= within:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)
