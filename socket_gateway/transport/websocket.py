"""Engine.IO sessions that open directly on a WebSocket, served on a plain asyncio Protocol.

Through aiohttp and python-engineio, every such connection cost about 2.2 ms of CPU from connect
to close (docs/benchmarks.md, "Connect cost"): aiohttp's request handler task, parser, middleware
and WebSocket reader and writer; then Engine.IO's writer task and queue, a task and an
``asyncio.wait_for`` per received packet, and a ping task that outlives the socket by 25 s. One
gateway process could not take 500 viewers arriving and leaving per second.

A session is handed its connection by the listener (``handover.py``) once the request head is read:

- the handshake is answered with the 101 and Engine.IO's OPEN packet in one write;
- frames are parsed in ``data_received`` (``frames.py``); the packets of one connection are
  handled in order by at most one task at a time, started when packets arrive and ended when they
  are handled;
- everything sent is framed and written straight into the transport: nothing is queued per
  socket, so nothing sent can overtake anything sent earlier;
- pings run on one timer handle per session, cancelled when the session ends.

The session is a python-engineio ``AsyncSocket`` in the Engine.IO server's socket table, so
python-socketio (emits, rooms, disconnects, shutdown) cannot tell the two kinds apart. What of
python-engineio's internals that relies on is named in ``library_internals``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.frames import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_PONG,
    FrameReader,
    ProtocolError,
    accept_header,
    close_frame,
    server_frame,
    websocket_text_frame,
)
from socket_gateway.transport.malformed_frames import engineio_frame_problem

if TYPE_CHECKING:
    from socket_gateway.transport.handover import UpgradeRequest, WebSocketEndpoint


@dataclass(frozen=True)
class _Close:
    """A request, in a session's inbox, to end the session once what came before is handled."""

    reason: str
    abort: bool


class WebSocketSession(internals.EngineIOSocket, asyncio.Protocol):
    """One Engine.IO session on its own WebSocket: the connection's protocol and Engine.IO's socket."""

    def __init__(
        self,
        endpoint: WebSocketEndpoint,
        transport: asyncio.Transport,
        request: UpgradeRequest,
        environ: dict[str, Any],
        address: str | None,
    ) -> None:
        eio = endpoint.eio
        super().__init__(eio)
        self.transport = transport
        self.environ = environ
        self._endpoint = endpoint
        self._request = request
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._frames = FrameReader(self, eio.max_http_buffer_size)
        self._inbox: deque[str | bytes | _Close | None] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        # The connection's place in the endpoint's per-address count, given back when it is lost.
        self._address = address
        # Engine.IO's send-ping cycle starts when the session opens, not at construction.
        self.last_ping = None
        self.upgraded = True
        internals.add_socket(eio, self)
        self._enqueue(None)  # None: open the session (Engine.IO's connect event, then the 101)

    # Engine.IO's socket

    async def send(self, pkt: internals.EngineIOPacket) -> None:
        self.write_packet(pkt)

    def write_packet(self, pkt: internals.EngineIOPacket) -> None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            self.write_frame(websocket_text_frame(encoded))
        else:
            self.write_frame(server_frame(OP_BINARY, encoded))

    def write_frame(self, frame: bytes) -> None:
        """Writes one ready server frame, unless the session has ended or its peer stopped reading."""
        transport = self.transport
        # Before the 101 is out nothing may be written (only a stop can try: it closes the session).
        if self.closed or not self.connected or transport.is_closing():
            return
        transport.write(frame)
        if transport.get_write_buffer_size() > self._endpoint.max_unsent_bytes:
            self._endpoint.note_dropped_for_unread(self.sid, self.environ["REMOTE_ADDR"])
            transport.abort()

    def schedule_ping(self) -> None:
        # Called by AsyncSocket.receive for a PONG: the next ping one interval from now.
        if self.last_ping:
            self.last_ping = None
            self._set_ping_timer(self.server.ping_interval, self._ping)

    async def close(self, wait: bool = True, abort: bool = False, reason: str | None = None) -> None:
        if self.closed or self.closing:
            return
        self.closing = True
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        server = self.server
        try:
            await internals.trigger_event(
                server, "disconnect", self.sid, reason or server.reason.SERVER_DISCONNECT
            )
        finally:
            if not abort:
                self.write_packet(internals.EngineIOPacket(internals.EIO_CLOSE))
            self.closed = True
            internals.forget_socket(server, self)
            self._close_transport(CLOSE_NORMAL)

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            offset = self._frames.read(buffer)
        except ProtocolError as error:
            buffer.clear()
            self._close_transport(error.close_code)
            self._enqueue(_Close(self.server.reason.TRANSPORT_ERROR, abort=True))
            return
        del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._address is not None:
            self._endpoint.connections.release(self._address)
            self._address = None
        if not self.closing and not self.closed:
            self._enqueue(_Close(self.server.reason.TRANSPORT_CLOSE, abort=True))

    # frames.FrameSink: what the peer's frames mean here

    def message(self, data: str | bytes) -> None:
        self._enqueue(data)

    def ping(self, payload: bytes) -> None:
        self.write_frame(server_frame(OP_PONG, payload))

    def peer_closed(self, code: int) -> None:
        # Answered with the peer's own code, then the connection closes.
        self._close_transport(code)
        self._enqueue(_Close(self.server.reason.TRANSPORT_CLOSE, abort=True))

    def stopped(self) -> bool:
        return self.transport.is_closing()

    def _close_transport(self, code: int) -> None:
        transport = self.transport
        if not transport.is_closing():
            if self.connected:  # a close frame only once the 101 is out
                transport.write(close_frame(code))
            transport.close()

    # Packets, in order, one task at a time

    def _enqueue(self, item: str | bytes | _Close | None) -> None:
        self._inbox.append(item)
        if self._worker is None:
            self._worker = self._loop.create_task(self._work())

    async def _work(self) -> None:
        inbox = self._inbox
        try:
            while inbox and not self.closed:
                item = inbox.popleft()
                if item is None:
                    await self._open()
                elif isinstance(item, _Close):
                    await self.close(wait=False, abort=item.abort, reason=item.reason)
                else:
                    await self._receive(item)
        finally:
            self._worker = None
            if self.closed:
                inbox.clear()

    async def _open(self) -> None:
        server = self.server
        accepted = await internals.trigger_event(server, "connect", self.sid, self.environ)
        if accepted is not None and accepted is not True:
            # Engine.IO refuses before upgrading: HTTP 401, as python-engineio answers it.
            self.closing = self.closed = True
            internals.forget_socket(server, self)
            self.transport.write(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()
            return
        self.connected = True
        accept = accept_header(self._request.key)
        opening = internals.open_packet(server, self.sid, upgrades=[])
        # The 101 and the OPEN packet in one write.
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + websocket_text_frame(opening.encode())
        )
        self._set_ping_timer(server.ping_interval, self._ping)

    async def _receive(self, data: str | bytes) -> None:
        problem = engineio_frame_problem(data)
        if problem is not None:
            self._endpoint.malformed_frames.report(self.sid, problem, self.environ["REMOTE_ADDR"])
            self._close_transport(CLOSE_PROTOCOL_ERROR)
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            return
        try:
            await self.receive_packet(data)
        except internals.UnknownPacketError:
            pass
        except Exception:
            # As python-engineio's own read loop: logged, and the connection goes on.
            self.server.logger.exception("Unknown receive error")

    # Pings (Engine.IO 4: the server pings, the client answers within the ping timeout)

    def _set_ping_timer(self, delay: float, callback: Callable[[], None]) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if not self.closing and not self.closed:
            self._ping_timer = self._loop.call_later(delay, callback)

    def _ping(self) -> None:
        self.last_ping = time.time()
        self.write_packet(internals.EngineIOPacket(internals.EIO_PING))
        self._set_ping_timer(self.server.ping_timeout, self._pong_missing)

    def _pong_missing(self) -> None:
        if self.last_ping:
            self._enqueue(_Close(self.server.reason.PING_TIMEOUT, abort=False))
