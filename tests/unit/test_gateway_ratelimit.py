"""The per-address connection limiter: O(1) per handshake however many addresses it tracks."""

from __future__ import annotations

import time

from socket_gateway.transport.ratelimit import ConnectionRateLimiter


def _cost_per_new_address(tracked: int, measured: int = 500) -> float:
    """Seconds per ``allow`` of a new address with ``tracked`` addresses seen within the last minute."""
    best = float("inf")
    now = [0.0]
    for _ in range(3):
        now[0] = 0.0
        limiter = ConnectionRateLimiter(per_minute=120, clock=lambda: now[0])
        for index in range(tracked):
            now[0] += 1e-4  # all of them within one minute: none has refilled, none may be forgotten
            limiter.allow(f"10.{index >> 16}.{(index >> 8) & 255}.{index & 255}")
        started = time.perf_counter()
        for index in range(measured):
            now[0] += 1e-4
            limiter.allow(f"192.168.{index >> 8}.{index & 255}")
        best = min(best, (time.perf_counter() - started) / measured)
    return best


def test_a_new_address_costs_the_same_with_20000_addresses_tracked_as_with_1000() -> None:
    """Proves O(1) per handshake: with 20,000 addresses seen within a minute (a big auction opening), a
    new address costs about what it costs with 1,000 tracked. A ratio, not a time: the old limiter
    scanned every bucket once more than 10,000 were tracked, which made it ~hundreds of times dearer."""
    small = _cost_per_new_address(1_000)
    large = _cost_per_new_address(20_000)
    assert large / small < 3.0, (small, large)


def test_buckets_that_refilled_are_forgotten_oldest_first_and_state_stays_under_its_cap() -> None:
    now = [0.0]
    limiter = ConnectionRateLimiter(per_minute=60, clock=lambda: now[0], max_tracked=1_000)
    for index in range(500):
        limiter.allow(f"10.0.{index >> 8}.{index & 255}")
    now[0] += 30
    for index in range(500):
        limiter.allow(f"10.1.{index >> 8}.{index & 255}")
    assert limiter.tracked_addresses == 1_000
    now[0] += 31  # the first 500 have refilled completely; the second 500 have not
    assert limiter.allow("192.0.2.1")
    assert limiter.tracked_addresses == 501
    # A touched address moves to the back: the oldest untouched one is evicted at the cap.
    for _ in range(59):
        assert limiter.allow("192.0.2.1")
    assert not limiter.allow("192.0.2.1")
    for index in range(600):
        limiter.allow(f"10.2.{index >> 8}.{index & 255}")
    assert limiter.tracked_addresses == 1_000
    assert not limiter.allow("192.0.2.1"), "a recently used bucket was evicted before older ones"
