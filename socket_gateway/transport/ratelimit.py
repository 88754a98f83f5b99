"""The per-client-address limit on new connections (token buckets refilled continuously), and its answer."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from service_common.log_limits import RateLimitedLog
from socket_gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

# Addresses remembered at most. Only an address seen within the last minute can be over its limit;
# past this many of them (a big auction opening, or one client cycling through an IPv6 prefix) the
# least recently seen is forgotten first, and may start again with a full bucket.
DEFAULT_MAX_TRACKED_ADDRESSES = 100_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ConnectionRateLimiter:
    """Allows each address ``per_minute`` connections per minute, in bursts of up to ``per_minute``.

    O(1) per call: buckets are kept in the order they were last touched, so the ones that have refilled
    completely (which hold nothing a fresh bucket would not) are always at the front and are dropped
    from there, each once. (It used to scan every bucket when more than 10,000 were tracked: with that
    many addresses seen within a minute, every new one paid for a full scan.)
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_tracked: int = DEFAULT_MAX_TRACKED_ADDRESSES,
    ) -> None:
        self._capacity = float(per_minute)
        self._refill_per_second = per_minute / 60.0
        self._full_after = self._capacity / self._refill_per_second
        self._clock = clock
        self._max_tracked = max_tracked
        # Least recently touched first (the clock is monotonic, so also oldest ``updated`` first).
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, address: str) -> bool:
        """Takes one token from ``address``'s bucket; False when it is empty."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(address)
        if bucket is None:
            self._forget_refilled(now)
            if len(buckets) >= self._max_tracked:
                buckets.popitem(last=False)
            bucket = buckets[address] = _Bucket(self._capacity, now)
        else:
            bucket.tokens = min(
                self._capacity, bucket.tokens + (now - bucket.updated) * self._refill_per_second
            )
            bucket.updated = now
            buckets.move_to_end(address)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    @property
    def tracked_addresses(self) -> int:
        return len(self._buckets)

    def _forget_refilled(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest.updated < self._full_after:
                return
            buckets.popitem(last=False)


class HandshakeAdmission:
    """Whether a new session from an address may open now; a refusal is counted and logged (rate-limited).

    Checked before Engine.IO allocates a session, so a flood costs one bucket update per attempt. The
    address is the TCP peer's: behind a proxy, configure the limit at the proxy.

    Args:
        limiter: the per-address buckets.
        metrics: ``gateway_connections_refused_total{reason="rate_limited"}``.
        cors_headers: the CORS headers Engine.IO would put on its own answer to this request, so a
            browser sees the 429 instead of a CORS error.
    """

    def __init__(
        self,
        limiter: ConnectionRateLimiter,
        metrics: GatewayMetrics,
        cors_headers: Callable[[web.Request], list[tuple[str, str]]],
    ) -> None:
        self._limiter = limiter
        self._metrics = metrics
        self._cors_headers = cors_headers
        # One line per 10 s, with how many refusals it stands for: a flood of handshakes over the
        # limit wrote 120k lines in 10 s when each refusal was logged.
        self._refusals = RateLimitedLog(logger, interval_seconds=10.0)
        metrics.rate_limited_logs["handshakes"] = self._refusals

    def __call__(self, remote: str) -> bool:
        if self._limiter.allow(remote):
            return True
        self._metrics.connections_refused["rate_limited"] += 1
        self._refusals.info(
            "rate_limited", "Connection refused", extra={"reason": "rate limited", "remote": remote}
        )
        return False

    def middleware(self, socketio_paths: Collection[str]) -> Middleware:
        """The check for the handshakes aiohttp serves (those websocket_transport hands over)."""

        paths = frozenset(socketio_paths)

        @web.middleware
        async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
            # A request that opens a new Engine.IO session (every later request carries its ``sid``).
            is_handshake = (
                request.path in paths and request.method == hdrs.METH_GET and "sid" not in request.query
            )
            if is_handshake and not self(request.remote or "unknown"):
                response = web.json_response({"error": "too many connections; retry later"}, status=429)
                response.headers.extend(self._cors_headers(request))
                return response
            return await handler(request)

        return limit
