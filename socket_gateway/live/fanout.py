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

(That check is ``EngineIOWebSockets.write_if_idle``, beside the driver that knows those sessions.)

Any other socket takes the Engine.IO queue, as every packet did before. A write never awaits, so
no peer holds up a room; a transport that fails closes, and Engine.IO sees the socket go.

Every count update a socket receives goes through here (room updates, relayed ones from other
nodes, and a joiner's own), so this is also where a socket is never sent the very update it was
sent last: a joiner is told its counts directly and also sits in the room whose update its join
set off, and whichever of the two comes second would repeat the first. What each socket was last
sent is forgotten when it leaves its room (``forget``), so a socket that comes back is told again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.engineio_websockets import EngineIOWebSockets
from socket_gateway.transport.frames import websocket_text_frame
from socket_gateway.transport.websocket import WebSocketSession

# Count updates are ~90 bytes: 64 KiB unsent means the peer has not read for a long while.
DEFAULT_HIGH_WATER_BYTES = 64 * 1024


@dataclass
class FanoutTally:
    direct: int = 0
    queued: int = 0
    # Not sent: the socket was sent this very packet last.
    repeats: int = 0


class RoomFanout:
    """Sends one Engine.IO packet to many sockets: written directly where safe, queued elsewhere.

    Args:
        eio: the gateway's Engine.IO server.
        websockets: the WebSockets python-engineio serves (where a direct write may be safe).
        high_water_bytes: a python-engineio WebSocket with this much unsent takes its queue.
    """

    def __init__(
        self,
        eio: internals.EngineIOServer,
        websockets: EngineIOWebSockets,
        *,
        high_water_bytes: int = DEFAULT_HIGH_WATER_BYTES,
    ) -> None:
        self._eio = eio
        self._websockets = websockets
        self._high_water_bytes = high_water_bytes
        # Engine.IO sid → the last packet's data sent to it (one string shared by a room's sockets).
        self._last_sent: dict[str, Any] = {}

    @property
    def websocket_sessions(self) -> int:
        """WebSocket sessions open for direct writes (served by websocket_transport or by aiohttp)."""
        return self._websockets.writable_sessions + sum(
            1 for socket in internals.sockets_of(self._eio).values() if isinstance(socket, WebSocketSession)
        )

    def forget(self, eio_sid: str) -> None:
        """Forgets what the socket was sent last (it left its room, or is gone)."""
        self._last_sent.pop(eio_sid, None)

    @property
    def remembered_sockets(self) -> int:
        """Sockets whose last update is remembered (bounded by the sockets in rooms)."""
        return len(self._last_sent)

    async def send(self, eio_sids: Iterable[str], pkt: internals.EngineIOPacket) -> FanoutTally:
        tally = FanoutTally()
        frame: bytes | None = None
        # Only text frames are built here; a binary packet always takes the queue.
        framed_here = not pkt.binary
        sockets = internals.sockets_of(self._eio)
        websockets = self._websockets
        data = pkt.data
        last_sent = self._last_sent
        for eio_sid in eio_sids:
            last = last_sent.get(eio_sid)
            if last is data or last == data:
                tally.repeats += 1
                continue
            last_sent[eio_sid] = data
            if framed_here:
                socket = sockets.get(eio_sid)
                if frame is None:
                    frame = websocket_text_frame(pkt.encode())
                if isinstance(socket, WebSocketSession):
                    # Served by websocket_transport: everything it sends is written at once, in order.
                    socket.write_frame(frame)
                    tally.direct += 1
                    continue
                if websockets.write_if_idle(eio_sid, frame, self._high_water_bytes):
                    tally.direct += 1
                    continue
            # Unbounded queue: this never waits for the peer.
            await self._eio.send_packet(eio_sid, pkt)
            tally.queued += 1
        return tally
