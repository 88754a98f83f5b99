"""aiohttp's server log, for the lines a client can cause: one rate-limited line per cause, and no
traceback for anything a client sent."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import TypeAlias

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from service_common.log_limits import RateLimitedLog

# The longest part of aiohttp's explanation kept in a line (it may quote the client's bytes).
_MAX_REASON_CHARS = 200

_SysExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)
_ExcInfo: TypeAlias = bool | _SysExcInfo | BaseException | None


class HttpServerLog(logging.Logger):
    """The logger aiohttp's request handler writes to: ``web.AppRunner(app, logger=HttpServerLog(...))``.

    aiohttp logs each malformed request (a bad request line or header, an oversized line, a broken
    chunk) at ERROR with a traceback, so anyone can write tracebacks into the log as fast as they can
    send bytes. Here such a request is one WARNING line, without traceback, rate-limited under the
    cause ``malformed_http``; an exception escaping a handler (a fault of the service) keeps its
    traceback, rate-limited under ``unhandled_http_error``. Debug lines go to aiohttp's logger as
    they are.

    Args:
        log: the service's rate-limited log for lines clients can cause.
        target: where debug lines go (aiohttp's own server logger).
    """

    def __init__(self, log: RateLimitedLog, target: logging.Logger = server_logger) -> None:
        super().__init__(target.name)
        self._limited = log
        self._target = target

    def isEnabledFor(self, level: int) -> bool:
        return self._target.isEnabledFor(level)

    def debug(
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfo = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self._target.debug(msg, *args, exc_info=exc_info, extra=extra)

    def warning(
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfo = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self._limited.warning("http_server_warning", str(msg), *args)

    def exception(
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfo = True,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, HttpProcessingError):
            self._limited.warning(
                "malformed_http",
                "Malformed HTTP request refused",
                extra={
                    "status": error.code,
                    "error": type(error).__name__,
                    "reason": str(error.message)[:_MAX_REASON_CHARS],
                },
            )
            return
        self._limited.error("unhandled_http_error", str(msg), *args, exc_info=error)

    def error(
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfo = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self.exception(msg, *args, exc_info=exc_info)
