"""Long-lived background tasks that are restarted with backoff when they fail, never lost silently."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service_common.cancellation import cancel_and_wait
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskHealth:
    """What ``/readyz`` and ``/metrics`` say about one supervised task."""

    name: str
    failures_total: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    backing_off: bool = False
    running_since: float | None = None


class Supervisor:
    """Runs named long-lived coroutines; one that raises is logged, counted and restarted with backoff.

    A task that returns normally is done and not restarted (a loop that ends on shutdown). A task is
    *healthy* once it has run ``stable_seconds`` without failing since its last failure: a loop that
    fails at once on every restart never looks healthy, so readiness stays off while it does.

    Args:
        initial_backoff_seconds: the first restart's delay, doubled per consecutive failure.
        max_backoff_seconds: the largest delay (with up to 20% jitter, so replicas do not retry in step).
        stable_seconds: how long a restarted task must run before it counts as recovered.
        clock: monotonic seconds.
        report_failure: called with the task's health, the exception it raised and the delay before
            its restart, instead of the default log lines: for a caller that says it its own way (a
            command-line tool printing to a terminal, a counter).
        expected_errors: exception types that are faults of the world, not of the code (a store
            that is down): their lines carry the error's message but no traceback.
    """

    def __init__(
        self,
        *,
        initial_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        stable_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        report_failure: Callable[[TaskHealth, Exception, float], None] | None = None,
        expected_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._expected_errors = expected_errors
        self._report_failure = report_failure
        self._initial_backoff = initial_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._stable = stable_seconds
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._health: dict[str, TaskHealth] = {}
        self._repeat_log = RateLimitedLog(logger, interval_seconds=60.0)

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Starts ``run()`` as the supervised task ``name``; ``run`` is called again after each failure."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        self._health[name] = TaskHealth(name)
        self._tasks[name] = asyncio.create_task(self._supervise(name, run), name=f"supervised:{name}")

    def health(self) -> list[TaskHealth]:
        return list(self._health.values())

    def unhealthy(self) -> list[TaskHealth]:
        """Tasks failing now or not yet stable since their last failure."""
        now = self._clock()
        return [
            health
            for health in self._health.values()
            if health.backing_off
            or (
                health.consecutive_failures
                and (health.running_since is None or now - health.running_since < self._stable)
            )
        ]

    async def stop_task(self, name: str) -> None:
        """Cancels the supervised task ``name`` and waits for it to finish."""
        task = self._tasks.pop(name, None)
        if task is not None:
            await cancel_and_wait(task)

    async def stop(self) -> None:
        """Cancels every supervised task and waits for each to finish."""
        tasks = list(self._tasks.values())
        await cancel_and_wait(*tasks)
        self._tasks.clear()

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        health = self._health[name]
        while True:
            health.running_since = self._clock()
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the point of a supervisor: any failure is retried
                failure = error
                self._record_failure(health, error)
            else:
                health.running_since = None
                return
            delay = min(self._max_backoff, self._initial_backoff * 2 ** (health.consecutive_failures - 1))
            delay *= random.uniform(1.0, 1.2)
            if self._report_failure is not None:
                self._report_failure(health, failure, delay)
            health.backing_off = True
            try:
                await asyncio.sleep(delay)
            finally:
                health.backing_off = False

    def _record_failure(self, health: TaskHealth, error: Exception) -> None:
        now = self._clock()
        if health.running_since is not None and now - health.running_since >= self._stable:
            health.consecutive_failures = 0
        health.failures_total += 1
        health.consecutive_failures += 1
        health.last_error = f"{type(error).__name__}: {error}"
        health.running_since = None
        if self._report_failure is not None:
            return
        if health.consecutive_failures == 1:
            logger.error(
                "Background task failed; restarting it",
                exc_info=None if isinstance(error, self._expected_errors) else error,
                extra={"task": health.name, "error": health.last_error},
            )
        else:
            self._repeat_log.error(
                health.name,
                "Background task failed again; restarting it",
                extra={
                    "task": health.name,
                    "error": health.last_error,
                    "failures": health.consecutive_failures,
                },
            )
