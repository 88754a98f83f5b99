"""The WebSockets python-engineio serves, through one driver class: a polling session's upgrade, deflate.

A session that opens directly on a WebSocket is the gateway's own (``websocket.py``). python-engineio
still serves the WebSocket of a long-polling session that upgrades, and, when compression is
configured, a new WebSocket that offers per-message deflate. Its aiohttp driver is replaced on the
gateway's Engine.IO server by :class:`EngineIOWebSocket`, which gives those sessions what the
gateway's own have:

- per-message deflate only when configured (python-engineio's accepts a browser's offer every
  time; the gateway's default is off: about 45% more CPU per message for count updates of a few
  dozen bytes);
- a malformed Engine.IO frame ends the session with one rate-limited warning (``malformed_frames``)
  instead of an ERROR with a traceback and a session left open;
- the session is known here while it is open, so the fan-out can write a count update straight into
  its transport when that is safe (:meth:`EngineIOWebSockets.write_if_idle`), and a session closed
  by the gateway (a deaf peer, a malformed Socket.IO packet) has its connection closed too.

It used to be three wrappers of python-engineio's driver installed in a required order (the fan-out's,
the malformed-frame check's, the session bounds'); this is the one class, installed once.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from aiohttp import web

from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.malformed_frames import (
    MalformedFrameLog,
    engineio_frame_problem,
    remote_address,
)
from socket_gateway.transport.upgrade import LISTENER_UPGRADE, ListenerWebSocket, UpgradeAcceptor


class EngineIOWebSockets:
    """Installs :class:`EngineIOWebSocket` as the Engine.IO server's driver and knows its open sessions.

    Args:
        eio: the gateway's Engine.IO server.
        compress: negotiate per-message deflate when a client offers it.
        malformed_frames: where a malformed frame is reported.
    """

    def __init__(
        self, eio: internals.EngineIOServer, *, compress: bool, malformed_frames: MalformedFrameLog
    ) -> None:
        self.compress = compress
        self.malformed_frames = malformed_frames
        # Every driver by its session's Engine.IO sid, from the upgrade request on.
        self._drivers: weakref.WeakValueDictionary[str, EngineIOWebSocket] = weakref.WeakValueDictionary()
        # The uncompressed ones whose session runs, with the connection's transport: direct writes.
        self._writable: dict[
            str, tuple[EngineIOWebSocket, web.WebSocketResponse | ListenerWebSocket, asyncio.Transport]
        ] = {}
        internals.install_websocket_driver(eio, self._driver)

    def _driver(self, handler: Any, server: Any) -> EngineIOWebSocket:
        driver = EngineIOWebSocket(handler, server, self)
        self._drivers[driver.socket.sid] = driver
        return driver

    @property
    def writable_sessions(self) -> int:
        """Sessions open on a python-engineio WebSocket that count updates can be written into."""
        return len(self._writable)

    def write_if_idle(self, eio_sid: str, frame: bytes, high_water_bytes: int) -> bool:
        """Writes a ready frame straight into the session's connection if that is safe; False if not.

        Safe when the session is an open, uncompressed WebSocket (not polling, not mid-upgrade), its
        writer has written everything queued before (so this cannot overtake it), and fewer than
        ``high_water_bytes`` wait unsent (a peer that stops reading gets its packets through its own
        queue, where the session's bounds apply).
        """
        entry = self._writable.get(eio_sid)
        if entry is None:
            return False
        driver, response, transport = entry
        socket = driver.socket
        if not internals.is_plain_websocket(socket) or not internals.writer_idle(socket):
            return False
        if response.closed or transport.is_closing():
            return False
        if transport.get_write_buffer_size() >= high_water_bytes:
            return False
        transport.write(frame)
        return True

    def abort(self, eio_sid: str) -> None:
        """Drops the session's connection at once (its writer may be stuck on a peer that does not read)."""
        driver = self._drivers.get(eio_sid)
        if driver is not None:
            driver.abort()

    async def close(self, eio_sid: str) -> None:
        """Closes the session's WebSocket (after its CLOSE packet, which a hostile peer would ignore)."""
        driver = self._drivers.get(eio_sid)
        if driver is not None:
            await driver.close()

    def _opened(self, driver: EngineIOWebSocket, response: web.WebSocketResponse | ListenerWebSocket) -> None:
        transport = driver.transport
        # A compressed session needs aiohttp's per-message deflate state: it keeps its queue.
        compressed = isinstance(response, web.WebSocketResponse) and response.compress
        if not compressed and transport is not None:
            self._writable[driver.socket.sid] = (driver, response, transport)

    def _closed(self, driver: EngineIOWebSocket) -> None:
        sid = driver.socket.sid
        entry = self._writable.get(sid)
        if entry is not None and entry[0] is driver:
            del self._writable[sid]


class EngineIOWebSocket(internals.AiohttpWebSocketDriver):
    """python-engineio's aiohttp WebSocket driver with the gateway's deflate setting and frame check.

    An upgrade the gateway's listener read itself (``upgrade.py``) runs on the listener's connection,
    through a :class:`ListenerWebSocket`, instead of aiohttp's ``WebSocketResponse``.
    """

    environ: dict[str, Any]

    def __init__(self, handler: Any, server: Any, sessions: EngineIOWebSockets) -> None:
        super().__init__(handler, server)
        self._sessions = sessions
        self._listener: ListenerWebSocket | None = None

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse | None:
        sessions = self._sessions
        acceptor: UpgradeAcceptor | None = environ.get(LISTENER_UPGRADE)
        response: web.WebSocketResponse | ListenerWebSocket
        if acceptor is not None:
            self.environ = environ
            response = self._listener = acceptor.accept_websocket()
            response.sid = self.socket.sid
        else:
            response = await self.prepare(environ, compress=sessions.compress)
        sessions._opened(self, response)
        try:
            await self.handler(self)
        finally:
            sessions._closed(self)
        return response if isinstance(response, web.WebSocketResponse) else None

    async def wait(self) -> str | bytes:
        listener = self._listener
        data: str | bytes = await (listener.receive() if listener is not None else super().wait())
        problem = engineio_frame_problem(data)
        if problem is not None:
            socket = self.socket
            self._sessions.malformed_frames.report(
                socket.sid, problem, remote_address(getattr(self, "environ", None))
            )
            # A failed read is how Engine.IO learns that a connection is gone: it closes the
            # session and Socket.IO runs the disconnect handler, so the room count drops at once.
            raise OSError(problem)
        return data

    async def send(self, message: str | bytes) -> None:
        listener = self._listener
        if listener is not None:
            listener.send(message)  # never waits: a peer that stops reading is dropped at the cap
        else:
            await super().send(message)

    async def close(self) -> None:
        listener = self._listener
        if listener is not None:
            listener.close()
        elif self.response is not None:
            await self.response.close()

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection under this WebSocket, once its request is known."""
        if self._listener is not None:
            return self._listener.transport
        request = internals.aiohttp_request(getattr(self, "environ", None) or {})
        transport = request.transport if request is not None else None
        return transport if isinstance(transport, asyncio.Transport) else None

    def abort(self) -> None:
        """Drops the connection under this WebSocket, if it has one."""
        if self._listener is not None:
            self._listener.abort()
            return
        transport = self.transport
        if transport is not None:
            transport.abort()
