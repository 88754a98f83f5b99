"""Log lines a client (or a fault) can cause, rate-limited per cause so no input can flood the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A cause is a short fixed name chosen by the code ("unknown_event", "unauthenticated"), never client
# input; the cap keeps the table bounded even if a caller gets that wrong.
_MAX_CAUSES = 1024


@dataclass(slots=True)
class _CauseState:
    window_start: float
    logged: int
    suppressed: int


class RateLimitedLog:
    """Logs at most ``burst`` lines per cause in each ``interval_seconds``; counts the rest.

    The first line of a cause after a suppressed stretch carries ``suppressed=N``: how many lines of
    that cause were left out since the last one logged. ``suppressed_total`` feeds ``/metrics``.

    Args:
        logger: where the lines go.
        interval_seconds: the window a cause's burst is counted in.
        burst: lines logged per cause per window.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_seconds: float = 10.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._burst = burst
        self._clock = clock
        self._causes: dict[str, _CauseState] = {}
        self.suppressed_total = 0

    def log(
        self,
        level: int,
        cause: str,
        message: str,
        *args: object,
        extra: Mapping[str, Any] | None = None,
        exc_info: bool | BaseException | None = False,
    ) -> bool:
        """Logs ``message`` under ``cause`` unless that cause used its burst in this window.

        ``exc_info`` attaches a traceback to the lines that are logged: True, the exception being
        handled; or the exception itself (only for faults of the code, never for what a client sent).

        Returns:
            Whether the line was logged.
        """
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        state = self._causes.get(cause)
        if state is None:
            if len(self._causes) >= _MAX_CAUSES:
                self._forget_quiet_causes(now)
            state = self._causes[cause] = _CauseState(now, 0, 0)
        elif now - state.window_start >= self._interval:
            state.window_start, state.logged = now, 0
        if state.logged >= self._burst:
            state.suppressed += 1
            self.suppressed_total += 1
            return False
        state.logged += 1
        fields = {"cause": cause, **(extra or {})}
        if state.suppressed:
            fields["suppressed"] = state.suppressed
            state.suppressed = 0
        self._logger.log(level, message, *args, extra=fields, exc_info=exc_info or None)
        return True

    def warning(
        self, cause: str, message: str, *args: object, extra: Mapping[str, Any] | None = None
    ) -> bool:
        return self.log(logging.WARNING, cause, message, *args, extra=extra)

    def info(self, cause: str, message: str, *args: object, extra: Mapping[str, Any] | None = None) -> bool:
        return self.log(logging.INFO, cause, message, *args, extra=extra)

    def error(
        self,
        cause: str,
        message: str,
        *args: object,
        extra: Mapping[str, Any] | None = None,
        exc_info: bool | BaseException | None = False,
    ) -> bool:
        return self.log(logging.ERROR, cause, message, *args, extra=extra, exc_info=exc_info)

    def exception(
        self, cause: str, message: str, *args: object, extra: Mapping[str, Any] | None = None
    ) -> bool:
        """An ERROR line with the exception being handled, rate-limited like any other cause."""
        return self.log(logging.ERROR, cause, message, *args, extra=extra, exc_info=True)

    def _forget_quiet_causes(self, now: float) -> None:
        quiet = [
            c for c, s in self._causes.items() if now - s.window_start >= self._interval and not s.suppressed
        ]
        for cause in quiet or list(self._causes)[: _MAX_CAUSES // 2]:
            del self._causes[cause]
