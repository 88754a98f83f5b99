"""Count updates written straight into each viewer's WebSocket: one frame for a whole room.

A session opened directly on a WebSocket (``websocket_transport``) writes everything it sends at
once, so an update is simply written into it. The rest of this is about the other WebSocket
sessions, the ones python-engineio serves through aiohttp (a polling session upgraded to
WebSocket, or one with per-message deflate).

Engine.IO gives every socket a queue and a writer task. Queuing one packet for each of N sockets
wakes N writer tasks, and on Python 3.11 each wake-up costs a task and a timer more
(``asyncio.wait_for``): that, not the network, was most of a broadcast's CPU (docs/benchmarks.md,
"Socket gateway"). A count update is the same bytes for everyone in a room, so it is framed once
and written to each socket's transport in a plain loop, where that is safe:

- the session is an open, uncompressed WebSocket (not polling, not mid-upgrade);
- the socket's writer is idle: its queue is empty and the writer waits on it. Everything queued
  before — the Socket.IO CONNECT, an acknowledgement, an earlier update — is then already in the
  transport, so the update cannot overtake it;
- the transport holds fewer unsent bytes than ``high_water_bytes``: a peer that stops reading
  gets its updates through its own Engine.IO queue instead, where they wait for it alone, and
  Engine.IO's ping timeout removes it as before.

Any other socket takes the Engine.IO queue, as every packet did before. A write never awaits, so
no peer holds up a room; a transport that fails closes, and Engine.IO sees the socket go.

Every count update a socket receives goes through here (room updates, relayed ones from other
nodes, and a joiner's own), so this is also where a socket is never sent the very update it was
sent last: a joiner is told its counts directly and also sits in the room whose update its join
set off, and whichever of the two comes second would repeat the first. What each socket was last
sent is forgotten when it leaves its room (``forget``), so a socket that comes back is told again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import engineio  # type: ignore[import-untyped]
from aiohttp import web
from engineio.async_drivers import aiohttp as engineio_aiohttp  # type: ignore[import-untyped]

from socket_gateway.transport.websocket import WebSocketSession, websocket_text_frame

# Count updates are ~90 bytes: 64 KiB unsent means the peer has not read for a long while.
DEFAULT_HIGH_WATER_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Session:
    socket: Any  # engineio.async_socket.AsyncSocket
    websocket: web.WebSocketResponse
    transport: asyncio.Transport

    def takes_direct_write(self, high_water_bytes: int) -> bool:
        socket = self.socket
        if socket.closing or socket.closed or socket.upgrading or not socket.upgraded:
            return False
        queue: asyncio.Queue[Any] = socket.queue
        # A waiting getter means the writer is parked in ``queue.get()``: it has written every
        # packet it took. Empty but no getter means it holds packets it has not written yet.
        if not queue.empty() or not queue._getters:  # type: ignore[attr-defined]
            return False
        if self.websocket.closed or self.transport.is_closing():
            return False
        return self.transport.get_write_buffer_size() < high_water_bytes


@dataclass
class FanoutTally:
    direct: int = 0
    queued: int = 0
    # Not sent: the socket was sent this very packet last.
    repeats: int = 0


class RoomFanout:
    """Sends one Engine.IO packet to many sockets: written directly where safe, queued elsewhere."""

    def __init__(
        self,
        eio: engineio.AsyncServer,
        *,
        compress: bool = False,
        high_water_bytes: int = DEFAULT_HIGH_WATER_BYTES,
    ) -> None:
        self._eio = eio
        self._compress = compress
        self._high_water_bytes = high_water_bytes
        self._sessions: dict[str, _Session] = {}
        # Engine.IO sid → the last packet's data sent to it (one string shared by a room's sockets).
        self._last_sent: dict[str, Any] = {}
        # The driver table is shared by every Engine.IO server in the process: replace, not mutate.
        eio._async = {**eio._async, "websocket": self._tracking_websocket}

    @property
    def websocket_sessions(self) -> int:
        """WebSocket sessions open for direct writes (served by websocket_transport or by aiohttp)."""
        return len(self._sessions) + sum(
            1 for socket in self._eio.sockets.values() if isinstance(socket, WebSocketSession)
        )

    def forget(self, eio_sid: str) -> None:
        """Forgets what the socket was sent last (it left its room, or is gone)."""
        self._last_sent.pop(eio_sid, None)

    @property
    def remembered_sockets(self) -> int:
        """Sockets whose last update is remembered (bounded by the sockets in rooms)."""
        return len(self._last_sent)

    async def send(self, eio_sids: Iterable[str], pkt: engineio.packet.Packet) -> FanoutTally:
        tally = FanoutTally()
        frame: bytes | None = None
        # Only text frames are built here; a binary packet always takes the queue.
        framed_here = not pkt.binary
        sockets = self._eio.sockets
        data = pkt.data
        last_sent = self._last_sent
        for eio_sid in eio_sids:
            last = last_sent.get(eio_sid)
            if last is data or last == data:
                tally.repeats += 1
                continue
            last_sent[eio_sid] = data
            socket = sockets.get(eio_sid) if framed_here else None
            if isinstance(socket, WebSocketSession):
                # Served by websocket_transport: everything it sends is written at once, in order.
                if frame is None:
                    frame = websocket_text_frame(pkt.encode())
                socket.write_frame(frame)
                tally.direct += 1
                continue
            session = self._sessions.get(eio_sid) if framed_here else None
            if session is not None and session.takes_direct_write(self._high_water_bytes):
                if frame is None:
                    frame = websocket_text_frame(pkt.encode())
                session.transport.write(frame)
                tally.direct += 1
            else:
                # Unbounded queue: this never waits for the peer.
                await self._eio.send_packet(eio_sid, pkt)
                tally.queued += 1
        return tally

    def _tracking_websocket(self, handler: Any, server: Any) -> Any:
        """Engine.IO's aiohttp WebSocket, with the session known here while its handler runs."""
        sessions = self._sessions
        socket = handler.__self__  # the AsyncSocket whose _websocket_handler this is

        async def tracked(ws: Any) -> Any:
            response: web.WebSocketResponse = ws._sock
            transport = ws.environ["aiohttp.request"].transport
            # A compressed session needs aiohttp's per-message deflate state: it keeps the queue.
            if response.compress or transport is None:
                return await handler(ws)
            sessions[socket.sid] = _Session(socket, response, transport)
            try:
                return await handler(ws)
            finally:
                if sessions.get(socket.sid) is not None and sessions[socket.sid].socket is socket:
                    del sessions[socket.sid]

        return _WebSocket(tracked, server, compress=self._compress)


class _WebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp WebSocket, negotiating per-message deflate only when configured.

    python-engineio's own accepts a browser's deflate offer every time; the gateway's default is
    off (about 45% more CPU per message for count updates of a few dozen bytes).
    """

    def __init__(self, handler: Any, server: Any, *, compress: bool) -> None:
        super().__init__(handler, server)
        self._compress = compress

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        # python-engineio's __call__ with the compress setting added.
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=self._compress
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock
