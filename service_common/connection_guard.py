"""Limits on the TCP connections of an aiohttp service: idle and partial-request timeouts, a cap per address.

aiohttp keeps an idle keep-alive connection for an hour (``keepalive_timeout=3630``), times nothing
out while a request's body trickles in, and accepts any number of connections from one address. A
client that opened 1,005 connections, made one request on each and then said nothing held them all
for that hour; with the usual limit of 1,024 file descriptors every new viewer was then refused.

- **Idle**: aiohttp's keep-alive timeout, set to ``idle_timeout_seconds``. aiohttp arms it when a
  connection opens and after each response, and closes the connection when it fires while no complete
  request has arrived; so it also bounds a request head that never ends, the first one included.
- **Partial request**: a request whose body has not fully arrived ``request_timeout_seconds`` after its
  head is aborted (a middleware; the handler keeps whatever time it needs once the body is in).
- **Per address**: at most ``max_connections_per_address`` open connections from one peer address; the
  next is answered 429 and closed before anything is read.
- **File descriptors**: when the process holds more than 80% of its descriptor limit, one warning
  (rate-limited: a line a minute at most) says so, with the open connections and the busiest address.

Both aiohttp services use it: the GraphQL API through :class:`GuardedSite`, the socket gateway through
its own listener (``socket_gateway.app.GatewaySite``), which counts its connections here as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from service_common.config import Variables, read_float, read_int
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

# Share of the descriptor limit past which the process says it is running out.
FD_WARNING_FRACTION = 0.8
# How often (at most) the open descriptors are counted: listing /proc/self/fd costs O(descriptors).
_FD_CHECK_SECONDS = 1.0
_REFUSAL = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
    b"Content-Length: 45\r\nConnection: close\r\n\r\ntoo many connections from this address; retry\n"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits; each service reads them under its own prefix (``GATEWAY``, ``GRAPHQL``).

    Args:
        idle_timeout_seconds: how long a connection may wait for its next request (and for the rest
            of a request head).
        request_timeout_seconds: how long a request's body may take to arrive after its head.
        max_connections_per_address: open connections one peer address may hold (0: no cap). Behind
            a reverse proxy every client has the proxy's address: raise it, and cap at the proxy.
    """

    idle_timeout_seconds: float = 15.0
    request_timeout_seconds: float = 10.0
    max_connections_per_address: int = 256

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> ConnectionLimits:
        """Reads ``{prefix}_HTTP_IDLE_TIMEOUT_SECONDS``, ``{prefix}_HTTP_REQUEST_TIMEOUT_SECONDS`` and
        ``{prefix}_MAX_CONNECTIONS_PER_ADDRESS``.

        Raises:
            service_common.config.ConfigError: a value is invalid (the message names the variable).
        """
        variables = connection_variables(prefix)
        return cls(
            idle_timeout_seconds=read_float(
                env, variables[f"{prefix}_HTTP_IDLE_TIMEOUT_SECONDS"], minimum=1.0, maximum=3600.0
            ),
            request_timeout_seconds=read_float(
                env, variables[f"{prefix}_HTTP_REQUEST_TIMEOUT_SECONDS"], minimum=1.0, maximum=600.0
            ),
            max_connections_per_address=read_int(
                env, variables[f"{prefix}_MAX_CONNECTIONS_PER_ADDRESS"], minimum=0, maximum=1_000_000
            ),
        )


def connection_variables(prefix: str) -> Variables:
    """The variables :meth:`ConnectionLimits.from_env` reads for ``prefix``, with their defaults."""
    variables = Variables()
    variables.declare(
        f"{prefix}_HTTP_IDLE_TIMEOUT_SECONDS",
        "15",
        "a connection idle (or mid request head) this long is closed",
    )
    variables.declare(
        f"{prefix}_HTTP_REQUEST_TIMEOUT_SECONDS", "10", "a request whose body takes this long is aborted"
    )
    variables.declare(
        f"{prefix}_MAX_CONNECTIONS_PER_ADDRESS", "256", "open connections per client address (0: no cap)"
    )
    return variables


def _count_open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _soft_fd_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class ConnectionGuard:
    """Counts a service's connections per address, refuses those over the cap, and installs the timeouts.

    Args:
        limits: the limits.
        on_refused: told the reason (``per_address_cap``, ``request_timeout``) of each connection
            refused or aborted here, for the service's metrics.
        clock: monotonic seconds.
        fd_limit: the descriptor limit (the process's soft ``RLIMIT_NOFILE`` if None).
        count_open_fds: how many descriptors are open (``/proc/self/fd`` if None; where that cannot
            be read, this guard's own connections stand in for them).
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        on_refused: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        fd_limit: int | None = None,
        count_open_fds: Callable[[], int | None] = _count_open_fds,
    ) -> None:
        self.limits = limits
        self._on_refused = on_refused
        self._clock = clock
        self._fd_limit = fd_limit if fd_limit is not None else _soft_fd_limit()
        self._count_open_fds = count_open_fds
        self._fds_checked_at = float("-inf")
        self._connections_at_check = 0
        self._per_address: Counter[str] = Counter()
        self.open_connections = 0
        self.log = RateLimitedLog(logger, interval_seconds=60.0, clock=clock)
        self.refusal_log = RateLimitedLog(logger, interval_seconds=10.0, clock=clock)

    # Connections

    def admit(self, transport: asyncio.BaseTransport) -> str | None:
        """Counts a new connection; its peer address, or None when it was refused (and closed) here."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        cap = self.limits.max_connections_per_address
        if cap and self._per_address[address] >= cap:
            self._refused("per_address_cap", address)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_REFUSAL)
            transport.close()
            return None
        self._per_address[address] += 1
        self.open_connections += 1
        self._check_fds()
        return address

    def release(self, address: str) -> None:
        """Uncounts a connection ``admit`` counted, once it is lost."""
        self.open_connections -= 1
        left = self._per_address[address] - 1
        if left > 0:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def connections_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    def track(self, protocol: asyncio.Protocol, address: str) -> asyncio.Protocol:
        """``protocol`` for a connection already admitted, released here when the connection is lost."""
        return _Released(protocol, lambda: self.release(address))

    def protocol_factory(
        self, make_protocol: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """A listener's protocol factory: each connection admitted here, then served by ``make_protocol``."""
        return lambda: _Admitted(self, make_protocol)

    # Timeouts

    def runner_options(self) -> dict[str, Any]:
        """``web.AppRunner`` keyword arguments: the idle timeout (aiohttp's keep-alive timeout)."""
        return {"keepalive_timeout": self.limits.idle_timeout_seconds}

    def install(self, app: web.Application) -> None:
        """Adds the partial-request timeout to ``app`` (before it starts)."""
        app.middlewares.append(self._request_deadline())

    def _request_deadline(self) -> Middleware:
        timeout = self.limits.request_timeout_seconds

        @web.middleware
        async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
            # The common case, a body that came with its head (or none), costs one check.
            if not request.body_exists or request.content.is_eof():
                return await handler(request)

            def check() -> None:
                if request.content.is_eof() or request.transport is None:
                    return
                self._refused("request_timeout", request.remote or "unknown")
                request.transport.abort()

            timer = asyncio.get_running_loop().call_later(timeout, check)
            try:
                return await handler(request)
            finally:
                timer.cancel()

        return deadline

    # Reports

    def _refused(self, reason: str, address: str) -> None:
        if self._on_refused is not None:
            self._on_refused(reason)
        self.refusal_log.info(
            reason,
            "Connection refused" if reason == "per_address_cap" else "Request timed out; connection closed",
            extra={
                "reason": reason,
                "remote": address,
                "connections_from_address": self.connections_from(address),
            },
        )

    def _check_fds(self) -> None:
        limit = self._fd_limit
        if limit is None:
            return
        now = self._clock()
        # Once a second, and whenever the connections grew by a twentieth of the limit since: a
        # burst of connections within one second must not get past the check.
        grown = self.open_connections - self._connections_at_check >= limit // 20
        if now - self._fds_checked_at < _FD_CHECK_SECONDS and not grown:
            return
        self._fds_checked_at = now
        self._connections_at_check = self.open_connections
        counted = self._count_open_fds()
        open_fds = counted if counted is not None else self.open_connections
        if open_fds < FD_WARNING_FRACTION * limit:
            return
        busiest, busiest_count = self._per_address.most_common(1)[0] if self._per_address else ("", 0)
        self.log.warning(
            "fd_limit",
            "Nearing the file-descriptor limit; new connections will soon be refused by the kernel",
            extra={
                "open_fds": open_fds,
                "fd_limit": limit,
                "connections": self.open_connections,
                "busiest_address": busiest,
                "busiest_address_connections": busiest_count,
            },
        )


class _Released(asyncio.Protocol):
    """Forwards every event to the protocol serving the connection; tells the guard when it is lost."""

    _inner: asyncio.Protocol
    _release: Callable[[], None] | None

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
        self._inner.connection_lost(exc)


class _Admitted(_Released):
    """A connection being accepted: admitted by the guard (or refused), then served by ``make_protocol``."""

    def __init__(self, guard: ConnectionGuard, make_protocol: Callable[[], asyncio.Protocol]) -> None:
        # Not _Released.__init__: the protocol it forwards to is made once the connection is admitted.
        self._guard = guard
        self._make_protocol = make_protocol
        self._release = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = self._guard.admit(transport)
        if address is None:
            self._inner = asyncio.Protocol()  # refused and closing: nothing will be read
            return
        self._release = lambda: self._guard.release(address)
        self._inner = self._make_protocol()
        self._inner.connection_made(transport)


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with every connection admitted by a :class:`ConnectionGuard`."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard, *, backlog: int = 128
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
