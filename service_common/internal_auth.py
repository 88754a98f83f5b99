"""The internal API key that every call between the services carries, and its server-side check."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from service_common.config import ConfigError, Variables
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

# The metadata entry (the seed's header name) that carries the key on every internal call.
INTERNAL_KEY_METADATA = "x-internal-request"
INTERNAL_API_KEY_VARIABLE = "INTERNAL_API_KEY"
INTERNAL_KEY_VARIABLES = Variables()
INTERNAL_API_KEY = INTERNAL_KEY_VARIABLES.declare(
    INTERNAL_API_KEY_VARIABLE,
    "",
    "the key of internal calls, at least 16 characters (several comma-separated during a rotation)",
    required=True,
)
MIN_KEY_LENGTH = 16
# The seed's .env example shipped this value; a deployment still using it is not secret at all.
EXAMPLE_KEY = "your-secret-key-here-12345"

# Health probes from orchestrators carry no credentials and read nothing but liveness.
_UNAUTHENTICATED_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def read_internal_api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """The accepted keys from ``INTERNAL_API_KEY``: one key, or several comma-separated.

    Several keys let a key be rotated without downtime: servers accept old and new while the
    callers switch, and clients send the first one.

    Raises:
        ConfigError: the variable is missing, or a key is too short or the seed's example value.
    """
    raw = env.get(INTERNAL_API_KEY.name, "")
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    if not keys:
        raise ConfigError(INTERNAL_API_KEY_VARIABLE, "is required (one key, or several comma-separated)")
    for position, key in enumerate(keys, start=1):
        if key == EXAMPLE_KEY:
            raise ConfigError(INTERNAL_API_KEY_VARIABLE, f"key #{position} is the published example value")
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                INTERNAL_API_KEY_VARIABLE,
                f"key #{position} is shorter than {MIN_KEY_LENGTH} characters",
            )
    return keys


def internal_key_metadata(key: str) -> tuple[tuple[str, str], ...]:
    """The call metadata a client sends to authenticate with ``key``."""
    return ((INTERNAL_KEY_METADATA, key),)


class InternalKeyRing:
    """The set of accepted keys, checked in constant time."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        # Comparing fixed-length digests keeps the comparison's time independent of the keys' lengths.
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)

    def accepts(self, presented: str | bytes | None) -> bool:
        """Whether ``presented`` is one of the keys; compares against every key, never stopping early."""
        if presented is None:
            return False
        raw = presented if isinstance(presented, bytes) else presented.encode()
        digest = hashlib.sha256(raw).digest()
        matched = False
        for accepted in self._digests:
            matched |= hmac.compare_digest(digest, accepted)
        return matched


def _presented_key(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | bytes | None:
    for name, value in metadata or ():
        if name == INTERNAL_KEY_METADATA:
            return value
    return None


def _refusing_handler(handler: Any, details: str) -> Any:
    """A handler that refuses the call without reading its request.

    It takes the request as a stream whatever the method's kind (the wire is the same): a unary
    handler's request would be read, up to the largest message allowed, before it could refuse.
    """

    async def refuse(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.stream_unary_rpc_method_handler(refuse)


class InternalKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses, with ``UNAUTHENTICATED``, every call without an accepted key, before any handler runs.

    Anyone who reaches the port can cause a refusal, so its log line is rate-limited per reason
    (``log``; by default one line per reason every 10 s, with the count of those left out);
    ``refused``, when given, is told each refusal's method and reason (``missing``, ``not accepted``)
    for the service's metrics.
    """

    def __init__(
        self,
        key_ring: InternalKeyRing,
        log: RateLimitedLog | None = None,
        refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self._key_ring = key_ring
        self._log = log if log is not None else RateLimitedLog(logger)
        self._refused = refused

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(_UNAUTHENTICATED_METHOD_PREFIXES):
            return handler
        presented = _presented_key(handler_call_details.invocation_metadata)
        if self._key_ring.accepts(presented):
            return handler
        reason = "missing" if presented is None else "not accepted"
        if self._refused is not None:
            self._refused(method, reason)
        # Never log the presented value: a near-miss key is still a secret.
        self._log.warning(
            f"refused_key_{reason.replace(' ', '_')}",
            "Refused internal call",
            extra={"method": method, "reason": f"key {reason}"},
        )
        return _refusing_handler(handler, f"internal key {reason} (metadata '{INTERNAL_KEY_METADATA}')")
