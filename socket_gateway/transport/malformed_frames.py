"""Malformed frames from clients: the connection is closed with one rate-limited warning line.

Left to themselves, python-engineio and python-socketio log an ERROR with a traceback for every frame
they cannot decode, and keep the connection open, so one hostile client can write the logs full. A
frame Engine.IO cannot decode at all (empty, an unknown packet type) is worse: the exception escapes
Engine.IO's read loop into aiohttp's error log and the socket is never closed, so its viewer stays in
its room's count until the ping timeout (up to 45 s by default). An event whose name is not a string
(``42[1]``, ``42[{}]``) passes python-socketio's decoding and then fails in a task of its own ("Task
exception was never retrieved"), again once per frame.

The reference Socket.IO server closes the connection on a packet it cannot parse or whose payload
is invalid (socket.io's ``Client.ondata``, socket.io-parser's ``isPayloadValid``); this does the
same: before Engine.IO decodes a frame, and before python-socketio handles a packet.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from socket_gateway.transport import library_internals as internals

logger = logging.getLogger(__name__)

# Engine.IO 4 packet types a client may send as text: open, close, ping, pong, message, upgrade,
# noop. "b" prefixes a base64 binary message (the polling encoding, accepted on WebSocket too).
_PACKET_TYPES = frozenset("0123456")
# What python-socketio raises for a packet it cannot decode or dispatch (json errors are ValueErrors).
# Anything else is a bug, not bad input, and keeps python-engineio's ERROR with a traceback.
_DECODE_ERRORS = (ValueError, TypeError, LookupError)
_PROBLEM_CHARS = 200


def remote_address(environ: dict[str, Any] | None) -> str | None:
    """The peer's address in a session's environ, whichever transport served its handshake."""
    if not environ:
        return None
    request = internals.aiohttp_request(environ)
    if request is not None:
        return request.remote
    return environ.get("REMOTE_ADDR")


def engineio_frame_problem(data: str | bytes) -> str | None:
    """Why Engine.IO cannot decode a WebSocket frame's payload, or None if it can.

    Mirrors ``engineio.packet.Packet.decode`` and the packet types ``AsyncSocket.receive`` handles.
    """
    if not isinstance(data, str):
        return None  # a binary frame is a binary message: Socket.IO judges it
    if not data:
        return "empty Engine.IO packet"
    if data[0] == "b":
        try:
            base64.b64decode(data[1:])
        except (binascii.Error, ValueError):
            return "binary Engine.IO packet with invalid base64"
        return None
    if data[0] not in _PACKET_TYPES:
        return "unknown Engine.IO packet type"
    return None


def socketio_packet_problem(encoded: str) -> str | None:
    """Why a client's Socket.IO packet is invalid, or None: socket.io-parser's payload rules.

    Raises:
        ValueError: the packet cannot be decoded at all (python-socketio's own error).
    """
    pkt = internals.SocketIOPacket(encoded_packet=encoded)
    data = pkt.data
    if pkt.packet_type in (internals.SIO_EVENT, internals.SIO_BINARY_EVENT):
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return "event without a string name"
    elif pkt.packet_type in (internals.SIO_ACK, internals.SIO_BINARY_ACK):
        if not isinstance(data, list):
            return "acknowledgement arguments are not a list"
    elif pkt.packet_type == internals.SIO_CONNECT:
        if data is not None and not isinstance(data, dict):
            return "connect payload is not an object"
    elif pkt.packet_type == internals.SIO_DISCONNECT:
        if data is not None:
            return "disconnect with a payload"
    elif pkt.packet_type == internals.SIO_CONNECT_ERROR:
        return "a client may not send CONNECT_ERROR"
    else:
        return f"unknown Socket.IO packet type {pkt.packet_type}"
    return None


class MalformedFrameLog:
    """One WARNING per offending connection, and never more than ``burst`` lines at once.

    Lines refill at ``per_second``; each line carries how many reports were suppressed since the
    previous one, so a flood from many connections costs a bounded number of lines and is still
    visible. The connections already reported are remembered up to ``remembered`` of them.
    """

    def __init__(
        self,
        *,
        burst: int = 10,
        per_second: float = 1.0,
        remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._per_second = per_second
        self._remembered = remembered
        self._clock = clock
        self._tokens = float(burst)
        self._refilled_at = clock()
        self._reported: OrderedDict[str, None] = OrderedDict()
        self.suppressed = 0
        self.reports = 0

    def report(self, connection: str, problem: str, remote: str | None = None) -> bool:
        """Counts one malformed frame from ``connection``; returns whether a line was logged."""
        self.reports += 1
        if connection in self._reported or not self._take_token():
            self.suppressed += 1
            return False
        self._reported[connection] = None
        if len(self._reported) > self._remembered:
            self._reported.popitem(last=False)
        logger.warning(
            "Malformed frame from a client; connection closed",
            extra={
                "connection": connection,
                "remote": remote,
                "problem": problem[:_PROBLEM_CHARS],
                "suppressed": self.suppressed,
            },
        )
        self.suppressed = 0
        return True

    def _take_token(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._per_second)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def guard_malformed_frames(
    sio: internals.SocketIOServer,
    log: MalformedFrameLog | None = None,
    *,
    close_websocket: Callable[[str], Awaitable[None]] | None = None,
) -> MalformedFrameLog:
    """Closes a session at its first malformed Socket.IO packet, with one rate-limited warning.

    A malformed Engine.IO frame is caught before this, by whichever transport read it (the gateway's
    own WebSocket, ``EngineIOWebSocket``, the polling POST reader). A second call returns the first
    call's log.

    Args:
        sio: the gateway's Socket.IO server.
        log: where reports go (a default ``MalformedFrameLog`` if None).
        close_websocket: closes the WebSocket python-engineio serves for an Engine.IO sid, if any
            (``EngineIOWebSockets.close``).
    """
    eio = sio.eio
    installed: MalformedFrameLog | None = getattr(eio, "malformed_frame_log", None)
    if installed is not None:
        return installed
    reports = log or MalformedFrameLog()

    async def check(handle_message: internals.EventHandler, eio_sid: str, data: str | bytes) -> None:
        try:
            # Decoded twice, here and by python-socketio: a few microseconds per client event, on a
            # path that carries joins and leaves, not the count updates.
            problem = socketio_packet_problem(data) if isinstance(data, str) else None
            if problem is not None:
                raise ValueError(problem)
            await handle_message(eio_sid, data)
        except _DECODE_ERRORS as error:
            remote = remote_address(internals.session_environ(sio, eio_sid))
            reports.report(eio_sid, f"{type(error).__name__}: {error}", remote)
            # Not eio.disconnect(): it waits until the client has taken the CLOSE packet, and a polling
            # client that never polls again would hold its POST (and this handler) for ever.
            socket = internals.sockets_of(eio).get(eio_sid)
            if socket is not None:
                await internals.close_session(socket, abort=False, reason=eio.reason.SERVER_DISCONNECT)
                internals.forget_socket(eio, socket)
            # The CLOSE packet leaves the WebSocket to the client; a hostile one would keep it open,
            # so it is closed here.
            if close_websocket is not None:
                await close_websocket(eio_sid)

    def checked(handle_message: internals.EventHandler) -> internals.EventHandler:
        async def checked_message(eio_sid: str, data: str | bytes) -> None:
            await check(handle_message, eio_sid, data)

        return checked_message

    internals.wrap_event_handler(eio, "message", checked)
    eio.malformed_frame_log = reports
    return reports
