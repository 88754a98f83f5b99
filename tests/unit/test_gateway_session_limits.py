"""The per-session bounds' own parts: the bounded queue's accounting, the payload check, the variables."""

from __future__ import annotations

import pytest
from engineio import packet as eio_packet  # type: ignore[import-untyped]

from service_common.config import ConfigError
from socket_gateway.config import GatewayConfig
from socket_gateway.transport.session_guard import SessionLimits, SessionQueue, polling_payload_problem

KEY = "gateway-test-key-0123456789"


def test_the_queue_counts_bytes_in_and_out_and_reports_the_first_packet_over_its_cap_once() -> None:
    overflows: list[SessionQueue] = []
    queue = SessionQueue(SessionLimits(max_queued_bytes=100, max_queued_packets=3), overflows.append)
    queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, "x" * 40))
    queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, "y" * 40))
    assert queue.queued_bytes == 82
    queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, "z" * 40))  # 123 bytes: over the cap
    assert (queue.qsize(), overflows) == (2, [queue])
    queue.put_nowait(eio_packet.Packet(eio_packet.PING))
    queue.put_nowait(None)  # python-engineio's "stop" for its writer always passes
    assert (queue.qsize(), len(overflows)) == (3, 1)
    assert queue.get_nowait().data == "x" * 40
    assert queue.queued_bytes == 41


def test_the_packet_cap_applies_as_well_as_the_byte_cap() -> None:
    overflows: list[SessionQueue] = []
    queue = SessionQueue(SessionLimits(max_queued_bytes=10_000, max_queued_packets=2), overflows.append)
    for _ in range(3):
        queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, "a"))
    assert (queue.qsize(), len(overflows)) == (2, 1)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", None),
        (b'3\x1e42["joinAuction"]', None),
        ("\x1e".join(["3"] * 17).encode(), "more than 16 packets in one polling payload"),
        (b"3\x1e", "empty Engine.IO packet"),
        (b"x", "unknown Engine.IO packet type"),
        (b"\xff", "polling payload not UTF-8"),
        (b"ba", "binary Engine.IO packet with invalid base64"),
    ],
)
def test_a_polling_payload_is_checked_before_engineio_decodes_it(body: bytes, problem: str | None) -> None:
    packets, found = polling_payload_problem(body)
    assert found == problem
    assert (packets == []) == (problem is not None or body == b"")


def test_the_session_bounds_are_read_from_the_environment_and_checked() -> None:
    defaults = GatewayConfig.from_env({"INTERNAL_API_KEY": KEY})
    assert (
        defaults.max_queued_bytes_per_session,
        defaults.max_queued_packets_per_session,
        defaults.connect_timeout_seconds,
    ) == (1024 * 1024, 1000, 10.0)
    config = GatewayConfig.from_env(
        {
            "INTERNAL_API_KEY": KEY,
            "GATEWAY_MAX_QUEUED_BYTES_PER_SESSION": "262144",
            "GATEWAY_MAX_QUEUED_PACKETS_PER_SESSION": "64",
            "GATEWAY_CONNECT_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert (config.max_queued_bytes_per_session, config.max_queued_packets_per_session) == (262144, 64)
    assert config.connect_timeout_seconds == 2.5
    for name, value in (
        ("GATEWAY_MAX_QUEUED_BYTES_PER_SESSION", "10"),
        ("GATEWAY_MAX_QUEUED_PACKETS_PER_SESSION", "0"),
        ("GATEWAY_CONNECT_TIMEOUT_SECONDS", "never"),
    ):
        with pytest.raises(ConfigError, match=name):
            GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, name: value})
