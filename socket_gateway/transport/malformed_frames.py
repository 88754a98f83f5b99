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
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import socketio  # type: ignore[import-untyped]
from socketio import packet as sio_packet

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
    request = environ.get("aiohttp.request")
    if request is not None:
        return request.remote  # type: ignore[no-any-return]
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
    pkt = sio_packet.Packet(encoded_packet=encoded)
    data = pkt.data
    if pkt.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return "event without a string name"
    elif pkt.packet_type in (sio_packet.ACK, sio_packet.BINARY_ACK):
        if not isinstance(data, list):
            return "acknowledgement arguments are not a list"
    elif pkt.packet_type == sio_packet.CONNECT:
        if data is not None and not isinstance(data, dict):
            return "connect payload is not an object"
    elif pkt.packet_type == sio_packet.DISCONNECT:
        if data is not None:
            return "disconnect with a payload"
    elif pkt.packet_type == sio_packet.CONNECT_ERROR:
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
    sio: socketio.AsyncServer, log: MalformedFrameLog | None = None
) -> MalformedFrameLog:
    """Closes a connection at its first malformed frame, with one rate-limited warning.

    Call it once the server's WebSocket driver is final (after ``RoomFanout`` replaced it): this
    wraps whatever driver is installed then. A second call returns the first call's log.

    Args:
        sio: the gateway's Socket.IO server.
        log: where reports go (a default ``MalformedFrameLog`` if None).
    """
    eio = sio.eio
    installed: MalformedFrameLog | None = getattr(eio, "malformed_frame_log", None)
    if installed is not None:
        return installed
    reports = log or MalformedFrameLog()
    make_websocket = eio._async["websocket"]
    # Each open WebSocket by its Engine.IO session, to close it after a malformed Socket.IO packet.
    websockets: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def checked_websocket(handler: Any, server: Any) -> Any:
        websocket = make_websocket(handler, server)
        wait = websocket.wait
        socket = handler.__self__  # the AsyncSocket whose _websocket_handler reads this WebSocket
        websockets[socket.sid] = websocket

        async def checked_wait() -> str | bytes:
            data: str | bytes = await wait()
            problem = engineio_frame_problem(data)
            if problem is not None:
                reports.report(socket.sid, problem, remote_address(getattr(websocket, "environ", None)))
                # A failed read is how Engine.IO learns that a connection is gone: it closes the
                # socket and Socket.IO runs the disconnect handler, so the room count drops at once.
                raise OSError(problem)
            return data

        websocket.wait = checked_wait
        return websocket

    handle_message = eio.handlers["message"]

    async def checked_message(eio_sid: str, data: str | bytes) -> None:
        try:
            # Decoded twice, here and by python-socketio: a few microseconds per client event, on a
            # path that carries joins and leaves, not the count updates.
            problem = socketio_packet_problem(data) if isinstance(data, str) else None
            if problem is not None:
                raise ValueError(problem)
            await handle_message(eio_sid, data)
        except _DECODE_ERRORS as error:
            remote = remote_address(sio.environ.get(eio_sid))
            reports.report(eio_sid, f"{type(error).__name__}: {error}", remote)
            # Not eio.disconnect(): it waits until the client has taken the CLOSE packet, and a polling
            # client that never polls again would hold its POST (and this handler) for ever.
            socket = eio.sockets.get(eio_sid)
            if socket is not None:
                await socket.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
                if eio.sockets.get(eio_sid) is socket:
                    del eio.sockets[eio_sid]
            # The CLOSE packet leaves the WebSocket to the client; a hostile one would keep it open,
            # so it is closed here.
            websocket = websockets.get(eio_sid)
            if websocket is not None:
                await websocket.close()

    # The driver table is shared by every Engine.IO server in the process: replace, not mutate.
    eio._async = {**eio._async, "websocket": checked_websocket}
    eio.on("message", checked_message)
    eio.malformed_frame_log = reports
    return reports
