"""service_common.connection_guard's parts that need no server: the descriptor warning, the variables."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service_common.config import ConfigError
from service_common.connection_guard import ConnectionGuard, ConnectionLimits


class _Transport(asyncio.WriteTransport):
    """A connection's transport as the guard sees it: a peer address, and what was written to it."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self._address = address
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self._address, 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


def test_nearing_the_descriptor_limit_is_logged_once_a_minute_with_the_busiest_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    open_fds = [10]
    guard = ConnectionGuard(
        ConnectionLimits(max_connections_per_address=0),
        clock=lambda: now[0],
        fd_limit=100,
        count_open_fds=lambda: open_fds[0],
    )
    guard.admit(_Transport("192.0.2.7"))
    assert not caplog.records
    open_fds[0] = 85
    for second in range(1, 120):
        now[0] = float(second)
        for _ in range(5):
            guard.admit(_Transport("192.0.2.9"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # at 1 s and 61 s: one a minute, however many connections arrive
    later = warnings[1].__dict__
    assert (later["open_fds"], later["fd_limit"], later["busiest_address"]) == (85, 100, "192.0.2.9")
    assert later["busiest_address_connections"] == 5 * 60 + 1  # seconds 1-60, then the one it logs on
    assert later["suppressed"] == 59


def test_an_address_over_its_cap_is_answered_429_and_others_are_not() -> None:
    refused: list[str] = []
    guard = ConnectionGuard(ConnectionLimits(max_connections_per_address=2), on_refused=refused.append)
    assert guard.admit(_Transport("192.0.2.1")) == "192.0.2.1"
    assert guard.admit(_Transport("192.0.2.1")) == "192.0.2.1"
    third = _Transport("192.0.2.1")
    assert guard.admit(third) is None
    assert third.written.startswith(b"HTTP/1.1 429 ")
    assert third.closed
    assert guard.admit(_Transport("192.0.2.2")) == "192.0.2.2"
    guard.release("192.0.2.1")
    assert guard.admit(_Transport("192.0.2.1")) == "192.0.2.1"
    assert (refused, guard.open_connections) == (["per_address_cap"], 3)


def test_the_limits_are_read_under_each_service_prefix_and_checked() -> None:
    assert ConnectionLimits.from_env({}, "GRAPHQL") == ConnectionLimits(15.0, 10.0, 256)
    limits = ConnectionLimits.from_env(
        {
            "GATEWAY_HTTP_IDLE_TIMEOUT_SECONDS": "30",
            "GATEWAY_HTTP_REQUEST_TIMEOUT_SECONDS": "5",
            "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",
        },
        "GATEWAY",
    )
    assert limits == ConnectionLimits(30.0, 5.0, 0)
    with pytest.raises(ConfigError, match="GRAPHQL_HTTP_IDLE_TIMEOUT_SECONDS"):
        ConnectionLimits.from_env({"GRAPHQL_HTTP_IDLE_TIMEOUT_SECONDS": "0"}, "GRAPHQL")
    with pytest.raises(ConfigError, match="GATEWAY_MAX_CONNECTIONS_PER_ADDRESS"):
        ConnectionLimits.from_env({"GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "many"}, "GATEWAY")


def test_a_burst_of_connections_within_one_second_is_still_checked_against_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Descriptors are counted once a second at most, and also whenever the connections grew by a
    twentieth of the limit: 1,000 connections arriving within one second were never checked."""
    guard = ConnectionGuard(
        ConnectionLimits(max_connections_per_address=0),
        clock=lambda: 0.0,
        fd_limit=1000,
        count_open_fds=lambda: guard.open_connections + 15,
    )
    for index in range(900):
        guard.admit(_Transport(f"192.0.2.{index % 4}"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 800 <= warnings[0].__dict__["open_fds"] <= 850
