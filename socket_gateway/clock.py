"""The wall clock the sampler follows, behind a small interface so tests can drive it by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch, and a way to wait for a moment of it."""

    def time(self) -> float: ...

    async def sleep_until(self, moment: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time()``, and asyncio's timer to wait."""

    def time(self) -> float:
        return time.time()

    async def sleep_until(self, moment: float) -> None:
        # The loop's timer runs on the monotonic clock and may wake a hair early or late against
        # the wall clock; the sampler labels the sample with the tick it waited for either way.
        await asyncio.sleep(max(0.0, moment - time.time()))
