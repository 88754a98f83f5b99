"""Malformed frames: which frames Engine.IO cannot decode, and the rate-limited warning about them."""

from __future__ import annotations

import logging

import engineio  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socket_gateway.transport.malformed_frames import MalformedFrameLog, engineio_frame_problem

LOGGER = "socket_gateway.transport.malformed_frames"


def engineio_accepts(data: str | bytes) -> bool:
    """What python-engineio itself does with a frame: decode it, then look its packet type up."""
    try:
        decoded = engineio.packet.Packet(encoded_packet=data)
    except ValueError:  # binascii.Error is one
        return False
    packet_type: int = decoded.packet_type
    return 0 <= packet_type < len(engineio.packet.packet_names)


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.text(max_size=12),
        st.text(alphabet='0123456789b4[]{}"=+/aZ٣', max_size=8),
        st.binary(max_size=12),
    )
)
def test_a_frame_is_refused_exactly_when_engineio_cannot_decode_it_or_its_type_is_not_ascii(
    data: str | bytes,
) -> None:
    # Engine.IO reads the type with int(), which also takes other scripts' digits; the protocol's
    # types are the ASCII digits 0-6, so only those pass.
    ascii_type = isinstance(data, bytes) or data[:1] in {*"0123456", "b"}
    assert (engineio_frame_problem(data) is None) == (engineio_accepts(data) and ascii_type)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ("", "empty Engine.IO packet"),
        ("x", "unknown Engine.IO packet type"),
        ("9", "unknown Engine.IO packet type"),
        ("٣", "unknown Engine.IO packet type"),  # int() reads an Arabic-Indic 3 as 3; Engine.IO does not
        ("bA", "binary Engine.IO packet with invalid base64"),
        ("b!", None),  # base64 decoding skips characters outside its alphabet
        ("4not socket.io", None),  # an Engine.IO message: Socket.IO judges its content
        (b"\x00", None),
        ("2", None),
    ],
)
def test_frame_problems(frame: str | bytes, problem: str | None) -> None:
    assert engineio_frame_problem(frame) == problem


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def test_one_line_per_connection_with_its_problem_and_remote(caplog: pytest.LogCaptureFixture) -> None:
    log = MalformedFrameLog(clock=Clock())
    with caplog.at_level(logging.WARNING, LOGGER):
        assert log.report("sid-1", "unknown Engine.IO packet type", "203.0.113.9")
        for _ in range(50):
            assert not log.report("sid-1", "ValueError: Expecting value")
    (line,) = warnings(caplog)
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "Malformed frame from a client; connection closed"
    assert (line.connection, line.remote, line.problem, line.suppressed) == (  # type: ignore[attr-defined]
        "sid-1",
        "203.0.113.9",
        "unknown Engine.IO packet type",
        0,
    )
    assert line.exc_info is None
    assert (log.reports, log.suppressed) == (51, 50)


def test_a_flood_from_many_connections_is_bounded_by_the_burst_and_the_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = MalformedFrameLog(burst=10, per_second=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, LOGGER):
        for n in range(1000):
            log.report(f"sid-{n}", "x" * 1000)
        assert len(warnings(caplog)) == 10
        clock.now += 3.5  # three more lines' worth
        for n in range(1000, 2000):
            log.report(f"sid-{n}", "x")
    lines = warnings(caplog)
    assert len(lines) == 13
    # The first line after the burst says how many were dropped before it.
    assert lines[10].suppressed == 990  # type: ignore[attr-defined]
    assert all(len(line.problem) == 200 for line in lines[:10])  # type: ignore[attr-defined]


def test_the_connections_remembered_are_bounded() -> None:
    log = MalformedFrameLog(burst=1_000_000, remembered=100, clock=Clock())
    for n in range(1000):
        log.report(f"sid-{n}", "x")
    assert log.report("sid-999", "x") is False, "a recent connection is remembered"
    assert log.report("sid-0", "x") is True, "the oldest were forgotten"
