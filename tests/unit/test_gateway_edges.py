"""Configuration, payload checks, viewer tokens, the connection rate limit and the reconnect backoff."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from service_common.config import ConfigError
from socket_gateway.config import GatewayConfig
from socket_gateway.live.protocol import (
    MAX_ID_LENGTH,
    MAX_TOKEN_LENGTH,
    PayloadError,
    ViewerTokenVerifier,
    auction_id_of,
    connect_request_of,
)
from socket_gateway.snapshots.sender import Backoff
from socket_gateway.transport.ratelimit import ConnectionRateLimiter

KEY = "gateway-test-key-0123456789"
SECRET = "s" * 40


def test_config_defaults_and_contract_variables() -> None:
    config = GatewayConfig.from_env(
        {
            "INTERNAL_API_KEY": KEY,
            "GATEWAY_PORT": "0",
            "ALLOWED_ORIGIN": "http://localhost:3000, https://shop.example/",
            "INGEST_TARGET": "ingest:50051",
            "SNAPSHOT_INTERVAL_SECONDS": "10",
            "SAMPLE_INTERVAL_SECONDS": "2",
            "COUNT_UPDATE_INTERVAL_MS": "250",
            "OUTBOX_PATH": "/tmp/x.sqlite3",
        }
    )
    assert config.port == 0
    assert config.allowed_origins == ("http://localhost:3000", "https://shop.example")
    assert config.ingest_target == "ingest:50051"
    assert (config.timing.snapshot_interval_seconds, config.timing.sample_interval_seconds) == (10, 2)
    assert config.count_update_interval_ms == 250
    assert config.outbox_path == "/tmp/x.sqlite3"
    assert config.internal_api_key == KEY
    assert config.websocket_compression is False
    defaults = GatewayConfig.from_env({"INTERNAL_API_KEY": KEY})
    assert defaults.port == 8081
    assert defaults.listen_backlog == 4096
    assert (
        GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "GATEWAY_LISTEN_BACKLOG": "512"}).listen_backlog
        == 512
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INTERNAL_API_KEY", ""),
        ("GATEWAY_PORT", "70000"),
        ("ALLOWED_ORIGIN", "localhost:3000"),
        ("INGEST_TARGET", "no-port"),
        ("COUNT_UPDATE_INTERVAL_MS", "fast"),
        ("VIEWER_TOKEN_SECRET", "short"),
        ("GATEWAY_WEBSOCKET_COMPRESSION", "maybe"),
        ("GATEWAY_LISTEN_BACKLOG", "0"),
    ],
)
def test_config_refuses_bad_values_naming_the_variable(variable: str, value: str) -> None:
    env = {"INTERNAL_API_KEY": KEY, variable: value}
    with pytest.raises(ConfigError) as refused:
        GatewayConfig.from_env(env)
    assert refused.value.variable == variable


@pytest.mark.parametrize(
    "payload",
    [
        None,
        # A bare id joins (issue 20); one that breaks the id rules does not.
        "",
        "a" * 129,
        "a b",
        42,
        [],
        {},
        {"auctionId": ""},
        {"auctionId": 7},
        {"auctionId": "a" * 129},
        {"auctionId": "a b"},
    ],
)
def test_malformed_join_payloads_are_refused(payload: Any) -> None:
    with pytest.raises(PayloadError):
        auction_id_of(payload)


def test_a_bare_auction_id_is_read_like_the_objects() -> None:
    assert auction_id_of("a-1") == auction_id_of({"auctionId": "a-1"}) == "a-1"


def test_connect_auth_fields_are_optional_but_checked() -> None:
    assert connect_request_of(None).auction_id is None
    request = connect_request_of({"auctionId": "a1", "viewerId": "v1"})
    assert (request.auction_id, request.viewer_id, request.token) == ("a1", "v1", None)
    with pytest.raises(PayloadError):
        connect_request_of({"viewerId": {"x": 1}})
    with pytest.raises(PayloadError):
        connect_request_of("a1")


@pytest.mark.parametrize(("key", "limit"), [("viewerId", MAX_ID_LENGTH), ("token", MAX_TOKEN_LENGTH)])
def test_a_connect_string_field_is_refused_over_its_own_limit_and_the_error_names_it(
    key: str, limit: int
) -> None:
    assert MAX_TOKEN_LENGTH == 4096
    connect_request_of({key: "t" * limit})
    with pytest.raises(PayloadError) as refused:
        connect_request_of({key: "t" * (limit + 1)})
    assert str(refused.value) == f"{key} must be a string of at most {limit} characters"


def test_viewer_token_vouches_for_the_viewer_id_and_must_be_signed_and_current() -> None:
    verifier = ViewerTokenVerifier(SECRET)
    good = jwt.encode({"sub": "viewer-9", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert verifier.viewer_id(good) == "viewer-9"
    expired = jwt.encode({"sub": "viewer-9", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "viewer-9", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256")
    no_expiry = jwt.encode({"sub": "viewer-9"}, SECRET, algorithm="HS256")
    for token in (None, "garbage", expired, forged, no_expiry):
        with pytest.raises(PayloadError):
            verifier.viewer_id(token)


def test_rate_limit_allows_a_burst_then_refills_over_time() -> None:
    now = [0.0]
    limiter = ConnectionRateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2")
    now[0] += 20  # one token back
    assert limiter.allow("10.0.0.1")
    assert not limiter.allow("10.0.0.1")


def test_backoff_stays_at_its_cap_after_hours_of_failures() -> None:
    """An ingest service down for hours: thousands of failures must not overflow the window."""
    backoff = Backoff(initial_seconds=0.5, maximum_seconds=30.0, rng=lambda low, high: high)
    delays = [backoff.next_delay() for _ in range(5_000)]
    assert delays[-1] == 30.0
    assert backoff.failures == 5_000


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap_and_resets() -> None:
    draws: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    backoff = Backoff(initial_seconds=0.5, maximum_seconds=4.0, rng=rng)
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert draws[0] == (0.25, 0.5)
    backoff.reset()
    assert backoff.next_delay() == 0.5
    real = Backoff(initial_seconds=1.0, maximum_seconds=8.0)
    assert all(0.5 <= real.next_delay() <= 8.0 for _ in range(20))


def test_rate_limit_state_stays_bounded_by_forgetting_refilled_buckets() -> None:
    now = [0.0]
    limiter = ConnectionRateLimiter(per_minute=60, clock=lambda: now[0])
    for index in range(10_000):
        limiter.allow(f"10.0.{index // 256}.{index % 256}")
    assert limiter.tracked_addresses == 10_000
    now[0] += 61  # every bucket has refilled
    assert limiter.allow("192.0.2.1")
    assert limiter.tracked_addresses == 1
