"""A per-client-address limit on new connections (token buckets refilled continuously)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Beyond this many tracked addresses, buckets that have refilled completely are dropped: such a
# bucket holds nothing a fresh one would not, so forgetting it loses no information.
_PRUNE_ABOVE = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ConnectionRateLimiter:
    """Allows each address ``per_minute`` connections per minute, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, address: str) -> bool:
        """Takes one token from ``address``'s bucket; False when it is empty."""
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[address] = _Bucket(self._capacity, now)
        else:
            bucket.tokens = min(
                self._capacity, bucket.tokens + (now - bucket.updated) * self._refill_per_second
            )
            bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    @property
    def tracked_addresses(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full_after = self._capacity / self._refill_per_second
        self._buckets = {
            address: bucket for address, bucket in self._buckets.items() if now - bucket.updated < full_after
        }
