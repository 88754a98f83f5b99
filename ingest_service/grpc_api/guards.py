"""What every call meets before a servicer: undecodable requests refused, and health bounded for anyone.

Health needs no key (orchestrators probe it), so it is the one surface anyone who reaches the port can
use; what a caller can make this process hold there is bounded here.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2

from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

# The calls anyone may make without a key: health, which orchestrators probe.
UNAUTHENTICATED_PREFIX = "/grpc.health.v1.Health/"
# Probes answer in microseconds, so a few in flight serve many prober; watches come from a handful
# of places, each held open for hours.
MAX_HEALTH_CHECKS = 16
MAX_HEALTH_WATCHES = 8


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answers a unary request whose bytes do not parse with ``INVALID_ARGUMENT`` and one rate-limited line.

    gRPC itself would answer ``UNKNOWN`` naming the Python exception, and log an ERROR traceback for
    each such request. A unary handler is given the raw bytes and they are parsed here instead. A
    streamed request is parsed as the servicer reads it: a ``DecodeError`` escaping the servicer (one
    that reads with ``async for``, as server reflection does) is refused here the same way.
    """

    def __init__(self, log: RateLimitedLog) -> None:
        self._log = log

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method: str = handler_call_details.method
        if handler.request_streaming:
            return self._guard_stream(handler, method)
        parse: Callable[[bytes], Any] = handler.request_deserializer
        log = self._log
        # The method is one this server serves (a handler was found), so the causes stay few.
        cause = f"malformed_request:{method}"

        async def parsed(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                return parse(raw)
            except Exception:  # whatever the parser raises, the bytes were the client's
                log.warning(
                    cause,
                    "Malformed request refused",
                    extra={"method": method, "peer": context.peer()},
                )
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request for {method}")

        if not handler.response_streaming:
            unary = handler.unary_unary

            async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await unary(await parsed(raw, context), context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, response_serializer=handler.response_serializer
            )

        streaming = handler.unary_stream
        if inspect.isasyncgenfunction(streaming):

            async def unary_stream_generator(
                raw: bytes, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async for response in streaming(await parsed(raw, context), context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                unary_stream_generator, response_serializer=handler.response_serializer
            )

        async def unary_stream_writer(raw: bytes, context: grpc.aio.ServicerContext) -> None:
            await streaming(await parsed(raw, context), context)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream_writer, response_serializer=handler.response_serializer
        )

    def _guard_stream(self, handler: Any, method: str) -> Any:
        log = self._log
        cause = f"malformed_request:{method}"

        async def refuse(context: grpc.aio.ServicerContext) -> None:
            log.warning(cause, "Malformed request refused", extra={"method": method, "peer": context.peer()})
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request for {method}")

        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if not handler.response_streaming:
            unary = handler.stream_unary

            async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await unary(requests, context)
                except DecodeError:
                    await refuse(context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
        streaming = handler.stream_stream
        if inspect.isasyncgenfunction(streaming):

            async def stream_stream_generator(
                requests: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    async for response in streaming(requests, context):
                        yield response
                except DecodeError:
                    await refuse(context)

            return grpc.stream_stream_rpc_method_handler(stream_stream_generator, **options)

        async def stream_stream_writer(requests: Any, context: grpc.aio.ServicerContext) -> None:
            try:
                await streaming(requests, context)
            except DecodeError:
                await refuse(context)

        return grpc.stream_stream_rpc_method_handler(stream_stream_writer, **options)


class BoundedHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """The standard health service, answering only for the services this server has.

    The library's ``Watch`` keeps a watcher for any name it is sent, however long and unknown, for as
    long as the caller holds the stream: 100 watches of 4 MB names held over 1 GB here. A name this
    server does not serve is answered ``NOT_FOUND`` (as ``Check`` already does) and nothing is kept.

    Args:
        services: the names that may be asked for ("" for the server as a whole).
        log: where the refusals go, rate-limited.
    """

    def __init__(self, services: Collection[str], log: RateLimitedLog) -> None:
        super().__init__()
        self._services = frozenset(services)
        self._log = log

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        if request.service not in self._services:
            self._log.warning(
                "health_unknown_service",
                "Health watch for an unknown service refused",
                extra={"peer": context.peer(), "name_length": len(request.service)},
            )
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        await super().Watch(request, context)


class UnauthenticatedCallLimiter(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Bounds the calls that need no key (health): how many run at once, and what a refused one costs.

    A unary call's request is read before its handler runs, so whatever a handler decides, the bytes
    (up to the server's largest message) are already in memory. Here a health call's handler is one
    that reads its request itself, after taking a slot: at most ``max_checks`` ``Check`` calls and
    ``max_watches`` ``Watch`` streams at once; beyond that a call is answered ``RESOURCE_EXHAUSTED``
    without its request being read. What callers without a key can make this process hold is so at
    most (``max_checks`` + ``max_watches``) requests of the largest size the server accepts.

    Args:
        log: where the refusals go, rate-limited.
        max_checks: ``Check`` calls in flight at once (probes answer in microseconds).
        max_watches: ``Watch`` streams open at once (each held for as long as its caller likes).
    """

    def __init__(
        self,
        log: RateLimitedLog,
        *,
        max_checks: int = MAX_HEALTH_CHECKS,
        max_watches: int = MAX_HEALTH_WATCHES,
    ) -> None:
        self._log = log
        self._limits = {"check": max_checks, "watch": max_watches}
        self._open = {"check": 0, "watch": 0}

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or handler.request_streaming or not method.startswith(UNAUTHENTICATED_PREFIX):
            return handler
        kind = "watch" if handler.response_streaming else "check"
        parse: Callable[[bytes], Any] = handler.request_deserializer or (lambda raw: raw)

        async def admitted(context: grpc.aio.ServicerContext) -> None:
            if self._open[kind] < self._limits[kind]:
                self._open[kind] += 1
                return
            self._log.warning(
                f"health_{kind}_limit",
                "Health call refused: too many at once",
                extra={"method": method, "limit": self._limits[kind]},
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self._limits[kind]} such calls at once"
            )

        async def request(context: grpc.aio.ServicerContext) -> Any:
            raw = await context.read()
            if raw is grpc.aio.EOF:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
            return parse(raw)

        if kind == "check":
            unary = handler.unary_unary

            async def check(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await admitted(context)
                try:
                    return await unary(await request(context), context)
                finally:
                    self._open[kind] -= 1

            return grpc.stream_unary_rpc_method_handler(
                check, response_serializer=handler.response_serializer
            )

        streaming = handler.unary_stream

        async def watch(_requests: Any, context: grpc.aio.ServicerContext) -> None:
            await admitted(context)
            try:
                if inspect.isasyncgenfunction(streaming):
                    async for response in streaming(await request(context), context):
                        await context.write(response)
                else:
                    await streaming(await request(context), context)
            finally:
                self._open[kind] -= 1

        return grpc.stream_stream_rpc_method_handler(watch, response_serializer=handler.response_serializer)
