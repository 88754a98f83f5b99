"""Bounds on every Engine.IO session, whichever transport serves it: what may queue, POSTs, CONNECT.

python-engineio gives each session an unbounded queue of packets to send. A long-polling client that
posts events asking for acknowledgements and never polls keeps them all: the gateway grew from 72
to 237 MiB in 30 s from one such session, and nothing ever freed it. The gateway's own WebSocket
transport has no queue (it writes into the connection at once) and drops a peer that leaves more
than ``max_queued_bytes`` unsent; this gives python-engineio's sessions (long-polling, a polling
session upgraded to WebSocket, a WebSocket with per-message deflate) the same bound in bytes and a
bound in packets: the session is closed, counted in ``gateway_sessions_dropped_unread_total``.

A polling POST that is not valid Engine.IO (more than 16 packets, an empty or unknown packet, bad
base64, not UTF-8) made python-engineio log an ERROR with a traceback and answer 200, and the session
went on: 15.7k tracebacks in 10 s from one client. Here it ends the session with one rate-limited
warning (``malformed_frames.MalformedFrameLog``) and a 400, as a malformed WebSocket frame ends its
connection.

A session that never sends Socket.IO's CONNECT (or whose CONNECT was refused) used to stay open until
its ping timeout, or for ever while it answered pings; it is closed ``connect_timeout_seconds`` after
it opened, counted in ``gateway_connections_refused_total{reason="connect_timeout"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service_common.log_limits import RateLimitedLog
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.engineio_websockets import EngineIOWebSockets
from socket_gateway.transport.malformed_frames import (
    MalformedFrameLog,
    engineio_frame_problem,
    remote_address,
)
from socket_gateway.transport.websocket import WebSocketSession

logger = logging.getLogger(__name__)

# A packet whose data is not text or bytes (Engine.IO's OPEN carries a dict) is counted as this many.
_OTHER_PACKET_BYTES = 64


@dataclass(frozen=True)
class SessionLimits:
    """What one session may hold unsent, and how long it may take to join Socket.IO.

    Args:
        max_queued_bytes: bytes of packets waiting for the client (on the gateway's own WebSocket
            transport: bytes unsent in the connection).
        max_queued_packets: packets waiting for the client (python-engineio's queue).
        connect_timeout_seconds: how long after the Engine.IO handshake a session may go without
            being connected to the Socket.IO namespace.
    """

    max_queued_bytes: int = 1024 * 1024
    max_queued_packets: int = 1000
    connect_timeout_seconds: float = 10.0


def _packet_bytes(item: Any) -> int:
    if item is None:
        return 0
    data = item.data
    return 1 + (len(data) if isinstance(data, str | bytes) else _OTHER_PACKET_BYTES)


class SessionQueue(asyncio.Queue[Any]):
    """python-engineio's per-session queue with a cap; a packet over it is dropped and reported once.

    ``None`` (python-engineio's "stop" for its writer) always passes; once over the cap, every other
    packet is dropped (the session is being closed).
    """

    def __init__(self, limits: SessionLimits, on_overflow: Callable[[SessionQueue], None]) -> None:
        super().__init__()
        self._limits = limits
        self._on_overflow = on_overflow
        self.queued_bytes = 0
        self.overflowed = False
        # The session's Engine.IO sid, set when its connect event runs (only OPEN is queued before).
        self.owner: str | None = None

    def put_nowait(self, item: Any) -> None:
        if item is not None:
            if self.overflowed:
                return
            limits = self._limits
            if (
                self.qsize() >= limits.max_queued_packets
                or self.queued_bytes + _packet_bytes(item) > limits.max_queued_bytes
            ):
                self.overflowed = True
                self._on_overflow(self)
                return
        super().put_nowait(item)

    def _put(self, item: Any) -> None:
        self.queued_bytes += _packet_bytes(item)
        super()._put(item)

    def _get(self) -> Any:
        item = super()._get()
        self.queued_bytes -= _packet_bytes(item)
        return item


class _MalformedPayload(internals.EngineIOError):  # type: ignore[misc]
    """A polling POST that is not Engine.IO: python-engineio answers 400 and forgets the session."""


def polling_payload_problem(body: bytes) -> tuple[list[internals.EngineIOPacket], str | None]:
    """A polling POST body's packets, or why it is not valid Engine.IO 4 (then no packets)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return [], "polling payload not UTF-8"
    if not text:
        return [], None  # python-engineio's reading of an empty body: no packets
    encoded = text.split("\x1e")
    max_packets = internals.max_packets_per_payload()
    if len(encoded) > max_packets:
        return [], f"more than {max_packets} packets in one polling payload"
    packets = []
    for one in encoded:
        problem = engineio_frame_problem(one)
        if problem is not None:
            return [], problem
        packets.append(internals.EngineIOPacket(encoded_packet=one))
    return packets, None


class SessionGuard:
    """Installs the bounds on one Socket.IO server's Engine.IO sessions.

    Args:
        sio: the gateway's Socket.IO server.
        limits: the bounds.
        malformed_frames: where a malformed polling payload is reported.
        metrics: the counters of dropped and timed-out sessions.
        websockets: the WebSockets python-engineio serves, whose connection is dropped with their session.
    """

    def __init__(
        self,
        sio: internals.SocketIOServer,
        limits: SessionLimits,
        malformed_frames: MalformedFrameLog,
        metrics: GatewayMetrics,
        websockets: EngineIOWebSockets,
    ) -> None:
        self._sio = sio
        self._eio = eio = sio.eio
        self.eio = eio
        self._limits = limits
        self._malformed_frames = malformed_frames
        self._metrics = metrics
        self._log = RateLimitedLog(logger, interval_seconds=10.0, burst=10)
        metrics.rate_limited_logs["sessions"] = self._log
        # Sessions by their Engine.IO sid, in the order they opened, until their connect deadline.
        self._awaiting_connect: deque[tuple[float, str]] = deque()
        self._connect_timer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._websockets = websockets
        internals.install_queue_factory(eio, self._create_queue)
        internals.wrap_event_handler(eio, "connect", self._guarded_connect)
        internals.wrap_event_handler(eio, "disconnect", self._answering_pending_poll)

    def _guarded_connect(self, socketio_connect: internals.EventHandler) -> internals.EventHandler:
        sockets = internals.sockets_of(self._eio)

        async def guarded_connect(eio_sid: str, environ: dict[str, Any]) -> Any:
            socket = sockets.get(eio_sid)
            if socket is not None:
                self._opened(socket)
            return await socketio_connect(eio_sid, environ)

        return guarded_connect

    def _answering_pending_poll(self, socketio_disconnect: internals.EventHandler) -> internals.EventHandler:
        sockets = internals.sockets_of(self._eio)
        client_left = self._eio.reason.CLIENT_DISCONNECT

        async def disconnect(eio_sid: str, reason: str, *args: Any) -> Any:
            socket = sockets.get(eio_sid)
            try:
                return await socketio_disconnect(eio_sid, reason, *args)
            finally:
                # python-engineio closes a session whose client sent CLOSE with abort: nothing
                # answers the client's pending long-poll, which the gateway then held open until
                # the ping timeout (45 s by default) — a connection, and one of a browser's six
                # per host, for each polling viewer who left. Answered now, as Node's engine.io
                # does. Only for the client's own CLOSE: a close of the server's sends CLOSE,
                # which the poll must get first.
                own = isinstance(socket, internals.EngineIOSocket)  # the gateway's WebSocket: no poll
                if socket is not None and not own and reason == client_left:
                    internals.end_pending_poll(socket)

        return disconnect

    # Queues

    def _create_queue(self) -> SessionQueue:
        return SessionQueue(self._limits, self._overflowed)

    def _overflowed(self, queue: SessionQueue) -> None:
        socket = internals.sockets_of(self._eio).get(queue.owner) if queue.owner is not None else None
        if socket is None or internals.session_queue(socket) is not queue or not internals.is_open(socket):
            return
        transport = "websocket" if internals.is_upgraded(socket) else "polling"
        self._metrics.sessions_dropped_unread[transport] += 1
        self._log.warning(
            "stopped_reading",
            "Viewer stopped reading; session closed",
            extra={
                "connection": socket.sid,
                "remote": remote_address(internals.session_environ(self._sio, socket.sid)),
                "transport": transport,
                "queued_packets": queue.qsize(),
                "queued_bytes": queue.queued_bytes,
            },
        )
        self._close_soon(socket, abort=True)

    # Sessions

    def _opened(self, socket: Any) -> None:
        if not isinstance(socket, WebSocketSession):
            # Served by python-engineio: its polling POSTs are read here, its queue has an owner.
            internals.replace_post_handler(socket, _PostReader(self, socket))
            queue = internals.session_queue(socket)
            if isinstance(queue, SessionQueue):
                queue.owner = socket.sid
        loop = asyncio.get_running_loop()
        self._awaiting_connect.append((loop.time() + self._limits.connect_timeout_seconds, socket.sid))
        if self._connect_timer is None:
            self._connect_timer = loop.call_at(self._awaiting_connect[0][0], self._check_connects)

    def _check_connects(self) -> None:
        self._connect_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = self._awaiting_connect
        sockets = internals.sockets_of(self._eio)
        while waiting and waiting[0][0] <= now:
            _, eio_sid = waiting.popleft()
            socket = sockets.get(eio_sid)
            if socket is None or not internals.is_open(socket):
                continue
            if internals.namespace_sid(self._sio, eio_sid) is None:
                self._metrics.connections_refused["connect_timeout"] += 1
                self._close_soon(socket, abort=False)
        if waiting:
            self._connect_timer = loop.call_at(waiting[0][0], self._check_connects)

    def _close_soon(self, socket: Any, *, abort: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._close(socket, abort=abort))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, socket: Any, *, abort: bool) -> None:
        eio = self._eio
        try:
            # Not eio.disconnect(): it waits until the client has taken the CLOSE packet, which a
            # client that does not read never does.
            await internals.close_session(socket, abort=abort, reason=eio.reason.TRANSPORT_ERROR)
        finally:
            internals.forget_socket(eio, socket)
            # An upgraded session's writer may be stuck sending to a peer that does not read.
            self._websockets.abort(socket.sid)

    def close(self) -> None:
        """Stops the connect-timeout timer (at shutdown)."""
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self._awaiting_connect.clear()

    async def refuse_post(self, socket: Any, problem: str | None) -> None:
        """Ends a polling session whose POST broke the protocol; python-engineio then answers 400.

        Args:
            socket: the session.
            problem: why the payload is not Engine.IO (reported), or None for one over maxPayload.
        """
        if problem is not None:
            self._malformed_frames.report(
                socket.sid, problem, remote_address(internals.session_environ(self._sio, socket.sid))
            )
        # A CLOSE for a poll that may be waiting, without waiting for it to be taken (python-engineio's
        # own disconnect would, and a client that never polls would hold the POST for ever). Raising
        # an EngineIOError makes python-engineio answer 400 and forget the closed session.
        await internals.close_session(socket, abort=False, reason=self._eio.reason.TRANSPORT_ERROR)
        if problem is None:
            raise internals.ContentTooLongError()
        raise _MalformedPayload(problem)


class _PostReader:
    """A polling session's ``handle_post_request``: python-engineio's, with the payload checked first."""

    def __init__(self, guard: SessionGuard, socket: Any) -> None:
        self._guard = guard
        self._socket = socket

    async def __call__(self, environ: dict[str, Any]) -> None:
        socket = self._socket
        server = self._guard.eio
        length = int(environ.get("CONTENT_LENGTH", "0"))
        if length > server.max_http_buffer_size:
            await self._guard.refuse_post(socket, None)
        try:
            body = await internals.read_post_body(environ, length)
        except asyncio.IncompleteReadError:
            return  # the client went away mid-body: nobody is left to answer
        packets, problem = polling_payload_problem(body)
        if problem is not None:
            await self._guard.refuse_post(socket, problem)
        for pkt in packets:
            if internals.is_closed(socket):
                break
            # A packet type a client does not send (open, ping, noop) is ignored, as on WebSocket.
            with contextlib.suppress(internals.UnknownPacketError):
                await internals.receive(socket, pkt)
        if internals.is_closed(socket):
            # Closed by this payload (a CLOSE packet, a malformed Socket.IO packet): forgotten now, so
            # a later request is told the session is unknown instead of failing on a closed one.
            internals.forget_socket(server, socket)
