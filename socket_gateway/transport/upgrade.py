"""A long-polling session's upgrade to WebSocket, served on the listener's own connection.

socket.io-client's default transports end every viewer's start with this upgrade: one GET with the
session's ``sid``, ``transport=websocket`` and the WebSocket handshake, then Engine.IO's probe and
UPGRADE packets. Handed to aiohttp, it paid for a request handler, a ``WebSocketResponse`` and its
reader and writer, around python-engineio's own upgrade (``AsyncSocket._websocket_handler``), about
a tenth of the gateway's CPU per such viewer. Here the listener (``handover.py``) keeps the request:
python-engineio still decides on it (``handle_request``: the session, its state, the origin) and
still runs the upgrade and the session's WebSocket from then on, through its driver
(``engineio_websockets.EngineIOWebSocket``), which then reads and writes through a
:class:`ListenerWebSocket` — frames parsed by ``frames.py`` as on the gateway's own WebSocket
sessions — instead of aiohttp's.

The guarantees stay those of python-engineio's WebSockets (docs/socket_gateway.md, "One transport
layer"): the session's bounded queue; a malformed Engine.IO frame or Socket.IO packet closes it with
one warning (the driver's check, the malformed-packet guard); python-engineio's heartbeats; and, as
the gateway's own sessions, a peer that leaves more than ``max_unsent_bytes`` unread is dropped
(writes never wait, so the queue drains into the connection and the cap is counted there).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from socket_gateway.transport.frames import (
    CLOSE_NORMAL,
    OP_BINARY,
    OP_PONG,
    FrameReader,
    ProtocolError,
    close_frame,
    server_frame,
    websocket_text_frame,
)

if TYPE_CHECKING:
    from socket_gateway.transport.handover import WebSocketEndpoint

# The environ key under which the listener offers python-engineio's driver the connection.
LISTENER_UPGRADE = "gateway.listener_upgrade"
# Messages read but not yet taken by python-engineio past which reading pauses (a peer that floods).
_MAX_INBOX_MESSAGES = 64


class UpgradeAcceptor(Protocol):
    """The listener's side of an upgrade request: switches its connection to WebSocket when asked."""

    def accept_websocket(self) -> ListenerWebSocket:
        """Answers 101 and hands the connection, from then on, to the returned WebSocket."""
        ...


class ListenerWebSocket(asyncio.Protocol):
    """The WebSocket of an upgraded python-engineio session, on the connection the listener accepted.

    Args:
        endpoint: the listener's endpoint (limits, metrics, the per-address count).
        transport: the connection, its 101 already written.
        address: the connection's place in the endpoint's per-address count, given back when lost.
    """

    def __init__(
        self, endpoint: WebSocketEndpoint, transport: asyncio.Transport, address: str | None
    ) -> None:
        self.transport = transport
        self._endpoint = endpoint
        self._address = address
        self._buffer = bytearray()
        self._frames = FrameReader(self, endpoint.eio.max_http_buffer_size)
        self._inbox: deque[str | bytes] = deque()
        self._arrived: asyncio.Future[None] | None = None
        self._ended = False
        self._paused = False
        # The Engine.IO sid, for the log line of a peer dropped for not reading.
        self.sid = ""

    @property
    def closed(self) -> bool:
        """Whether nothing more can be written (closed by either side)."""
        return self._ended or self.transport.is_closing()

    # What python-engineio's driver calls

    async def receive(self) -> str | bytes:
        """The next message from the peer.

        Raises:
            OSError: the connection has ended (python-engineio's driver reads that as the end).
        """
        while not self._inbox:
            if self._ended:
                raise OSError("WebSocket closed")
            self._arrived = asyncio.get_running_loop().create_future()
            try:
                await self._arrived
            finally:
                self._arrived = None
        data = self._inbox.popleft()
        if self._paused and len(self._inbox) < _MAX_INBOX_MESSAGES // 2:
            self._paused = False
            self.transport.resume_reading()
        return data

    def send(self, message: str | bytes) -> None:
        """Writes one message, unless the connection has ended; drops a peer that stopped reading."""
        if isinstance(message, str):
            self.write_frame(websocket_text_frame(message))
        else:
            self.write_frame(server_frame(OP_BINARY, message))

    def write_frame(self, frame: bytes) -> None:
        """Writes one ready server frame (the fan-out's count updates come this way too)."""
        transport = self.transport
        if self._ended or transport.is_closing():
            return
        transport.write(frame)
        if transport.get_write_buffer_size() > self._endpoint.max_unsent_bytes:
            self._endpoint.note_dropped_for_unread(self.sid, _peer_host(transport))
            transport.abort()
            self._end()

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Sends a close frame and closes the connection (once)."""
        transport = self.transport
        if not transport.is_closing():
            transport.write(close_frame(code))
            transport.close()
        self._end()

    def abort(self) -> None:
        self.transport.abort()
        self._end()

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._ended:
            return
        buffer = self._buffer
        buffer += data
        try:
            offset = self._frames.read(buffer)
        except ProtocolError as error:
            buffer.clear()
            self.close(error.close_code)
            return
        del buffer[:offset]
        if len(self._inbox) >= _MAX_INBOX_MESSAGES and not self._paused and not self._ended:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._endpoint.connections.release(self._address)
            self._address = None
        self._end()

    # frames.FrameSink

    def message(self, data: str | bytes) -> None:
        self._inbox.append(data)
        self._wake()

    def ping(self, payload: bytes) -> None:
        self.write_frame(server_frame(OP_PONG, payload))

    def peer_closed(self, code: int) -> None:
        self.close(code)  # answered with the peer's own code

    def stopped(self) -> bool:
        return self._ended or self.transport.is_closing()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        arrived = self._arrived
        if arrived is not None and not arrived.done():
            arrived.set_result(None)


def _peer_host(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None
