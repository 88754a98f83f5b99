"""Every place the gateway relies on python-engineio's or python-socketio's private workings, by name.

The gateway goes beyond these libraries' public API in a few dozen places: its own Engine.IO
sessions are python-engineio sockets, python-engineio's WebSocket driver and queue are replaced,
python-socketio's room tables are indexed and its room emits handed to the gateway's fan-out. None of
that is promised by either library, so a release can change it without notice, and some changes
would be silent (a renamed ``schedule_ping`` would stop the ping timeout without an error).

So every such touch point is here and nowhere else: a function or a small class each, its docstring
saying what private thing it uses and why. ``tests/unit/test_library_internals.py`` holds a test per
touch point against the installed libraries (a change underneath fails a test instead of a viewer's
session), and a test that no other module of the gateway imports either library's private names.
:func:`check_library_versions` refuses to start the gateway on other versions than these were
written and tested for (``create_app`` calls it): to upgrade, change the pins here and in
pyproject.toml together and run those tests.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import engineio  # type: ignore[import-untyped]
import socketio  # type: ignore[import-untyped]
from aiohttp import web
from engineio import async_socket
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_drivers import aiohttp as engineio_aiohttp  # type: ignore[import-untyped]
from socketio import packet as sio_packet

from service_common.config import ConfigError

# The versions every touch point below was written for and is tested against (pyproject.toml pins
# the same ones).
WRITTEN_FOR = {"python-engineio": "4.15.1", "python-socketio": "5.18.1"}

# Re-exported so that no other module imports python-engineio or python-socketio for them.
EngineIOServer = engineio.AsyncServer
EngineIOPacket = eio_packet.Packet
UnknownPacketError = engineio.exceptions.UnknownPacketError
EngineIOError = engineio.exceptions.EngineIOError
ContentTooLongError = engineio.exceptions.ContentTooLongError
SocketIOServer = socketio.AsyncServer
SocketIOPacket = sio_packet.Packet
SocketIOAsyncManager = socketio.AsyncManager
# Engine.IO 4 packet types and Socket.IO 5 packet types (the protocols' numbers).
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG = eio_packet.OPEN, eio_packet.CLOSE, eio_packet.PING, eio_packet.PONG
EIO_MESSAGE, EIO_NOOP = eio_packet.MESSAGE, eio_packet.NOOP
SIO_CONNECT, SIO_DISCONNECT, SIO_EVENT, SIO_ACK = (
    sio_packet.CONNECT,
    sio_packet.DISCONNECT,
    sio_packet.EVENT,
    sio_packet.ACK,
)
SIO_CONNECT_ERROR, SIO_BINARY_EVENT, SIO_BINARY_ACK = (
    sio_packet.CONNECT_ERROR,
    sio_packet.BINARY_EVENT,
    sio_packet.BINARY_ACK,
)


class LibraryVersionError(ConfigError):
    """python-engineio or python-socketio is installed at another version than this module was written for."""


def check_library_versions(installed: Callable[[str], str] = importlib.metadata.version) -> None:
    """Refuses to run on library versions these touch points were not written and tested for.

    Args:
        installed: the installed version of a distribution (``importlib.metadata.version``).

    Raises:
        LibraryVersionError: a version differs (one line naming the package, both versions, and what to do).
    """
    for distribution, expected in WRITTEN_FOR.items():
        try:
            version = installed(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "none"
        if version != expected:
            raise LibraryVersionError(
                distribution,
                f"installed {version}, but the gateway reaches into its internals as of {expected} "
                "(socket_gateway/transport/library_internals.py); install the pinned versions "
                "(pyproject.toml), or move the pins there and run tests/unit/test_library_internals.py",
            )


# --- python-engineio: the server ------------------------------------------------------------------


async def trigger_event(eio: engineio.AsyncServer, event: str, *args: Any) -> Any:
    """Runs one of the Engine.IO server's event handlers now and returns what it returned.

    Uses ``AsyncServer._trigger_event(event, *args, run_async=False)``: the gateway's own WebSocket
    sessions raise Engine.IO's ``connect`` and ``disconnect`` as python-engineio's sockets do, so
    python-socketio (registered as those handlers) cannot tell them apart. A refused connect returns
    False (or the refusal's value); an exception in a handler is logged by python-engineio.
    """
    return await eio._trigger_event(event, *args, run_async=False)


def origin_refused(eio: engineio.AsyncServer, environ: dict[str, Any]) -> bool:
    """Whether python-engineio would refuse this request's ``Origin`` (it answers such a request 400).

    Uses ``AsyncServer._cors_allowed_origins(environ)`` (None: any origin), which resolves the
    configured ``cors_allowed_origins`` (a list, ``"*"``, a callable, or the request's own host),
    so that the gateway's own WebSocket transport refuses exactly what python-engineio refuses.
    """
    origin = environ.get("HTTP_ORIGIN")
    if not origin or eio.cors_allowed_origins == []:
        return False
    allowed = eio._cors_allowed_origins(environ)
    return allowed is not None and origin not in allowed


def cors_headers(eio: engineio.AsyncServer, request: web.Request) -> list[tuple[str, str]]:
    """The CORS headers python-engineio would put on its own answer to this aiohttp request.

    Uses ``AsyncServer._cors_headers(environ)`` on the environ of python-engineio's aiohttp driver
    (``translate_request``): a handshake refused before it reaches Engine.IO (the per-address limit's
    429) carries them too, so a browser sees the 429 instead of a CORS error.
    """
    headers: list[tuple[str, str]] = eio._cors_headers(engineio_aiohttp.translate_request(request))
    return headers


def cors_headers_of(eio: engineio.AsyncServer, environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The CORS headers python-engineio would put on its answer to a request with this environ.

    Uses ``AsyncServer._cors_headers(environ)``, as :func:`cors_headers` does, for a long-polling
    request the gateway read itself: its refused handshake's 429 carries them as aiohttp's does.
    """
    headers: list[tuple[str, str]] = eio._cors_headers(environ)
    return headers


def websocket_driver(eio: engineio.AsyncServer) -> Any:
    """The WebSocket driver this Engine.IO server builds for a session's WebSocket.

    Uses ``AsyncServer._async["websocket"]``, the aiohttp mode's driver table: called as
    ``driver(socket._websocket_handler, server)`` for a polling session's upgrade and for a new
    WebSocket session python-engineio serves, then awaited with the request's environ.
    """
    return eio._async["websocket"]


def install_websocket_driver(eio: engineio.AsyncServer, driver: Callable[[Any, Any], Any]) -> None:
    """Makes ``driver`` the WebSocket driver of this Engine.IO server only.

    Uses ``AsyncServer._async``: the table is python-engineio's module-level ``_async`` dict of the
    aiohttp driver, shared by every server in the process, so it is replaced on this server, never
    changed in place (a second gateway in one process, as the tests run, keeps its own).
    """
    eio._async = {**eio._async, "websocket": driver}


class PlainResponse(NamedTuple):
    """python-engineio's answer to a request the gateway read itself: status line text, headers, body."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes


# Marks an environ built by the gateway's own HTTP reading (``transport/polling.py``), not by aiohttp.
PLAIN_REQUEST = "gateway.plain_request"


def install_plain_requests(eio: engineio.AsyncServer) -> None:
    """Lets ``eio.handle_request(environ)`` answer a request the gateway read itself (:class:`PlainResponse`).

    Uses ``AsyncServer._async["translate_request"]`` and ``["make_response"]``, the aiohttp mode's
    adapters, which ``AsyncServer.handle_request(*args)`` calls (synchronously, as they are) to turn
    its argument into a WSGI environ and its answer (``status``, ``headers``, ``payload``, ``environ``)
    into a response. Replaced on this server only, as :func:`install_websocket_driver` does: an environ
    marked with :data:`PLAIN_REQUEST` passes through and is answered with a ``PlainResponse``; an
    aiohttp request still goes through python-engineio's own adapters.
    """
    table = eio._async
    translate, make = table["translate_request"], table["make_response"]

    def translate_request(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], dict) and PLAIN_REQUEST in args[0]:
            return args[0]
        return translate(*args, **kwargs)

    def make_response(status: str, headers: list[tuple[str, str]], payload: bytes, environ: Any) -> Any:
        if PLAIN_REQUEST in environ:
            return PlainResponse(status, headers, payload)
        return make(status, headers, payload, environ)

    eio._async = {**table, "translate_request": translate_request, "make_response": make_response}


async def handle_plain_request(eio: engineio.AsyncServer, environ: dict[str, Any]) -> PlainResponse:
    """python-engineio's answer to a polling request the gateway read itself (``AsyncServer.handle_request``).

    The environ carries :data:`PLAIN_REQUEST`; :func:`install_plain_requests` must have been called.
    """
    response = await eio.handle_request(environ)
    if not isinstance(response, PlainResponse):
        raise TypeError(f"python-engineio answered a plain request with {type(response).__name__}")
    return response


async def handle_plain_upgrade(eio: engineio.AsyncServer, environ: dict[str, Any]) -> PlainResponse | None:
    """A long-polling session's upgrade the gateway read itself, run by python-engineio to its end.

    ``AsyncServer.handle_request`` checks the request (session, state, transport, origin) and, for an
    upgrade, returns whatever the WebSocket driver's ``__call__`` returned once the session's
    WebSocket has ended (``AsyncSocket.handle_get_request`` → ``_upgrade_websocket``): the gateway's
    driver returns None for a connection it took over. A refusal is a :class:`PlainResponse`.
    """
    response = await eio.handle_request(environ)
    if response is not None and not isinstance(response, PlainResponse):
        raise TypeError(f"python-engineio answered a plain upgrade with {type(response).__name__}")
    return response


def install_queue_factory(eio: engineio.AsyncServer, factory: Callable[[], asyncio.Queue[Any]]) -> None:
    """Makes ``factory()`` the queue of every new python-engineio session of this server.

    Uses ``AsyncServer.create_queue``, which ``BaseSocket.__init__`` calls for each session's queue of
    packets to send (unbounded in python-engineio): replaced by a bounded one (``SessionQueue``).
    """

    def create_queue(*args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return factory()

    eio.create_queue = create_queue


EventHandler = Callable[..., Awaitable[Any]]


def wrap_event_handler(
    eio: engineio.AsyncServer, event: str, wrap: Callable[[EventHandler], EventHandler]
) -> None:
    """Puts ``wrap(handler)`` in place of the Engine.IO handler python-socketio registered for ``event``.

    Uses ``AsyncServer.handlers``, the table ``AsyncServer.on`` fills: python-socketio registers its
    ``connect``, ``message`` and ``disconnect`` handlers there when it creates its Engine.IO server;
    the gateway checks what reaches them first (a malformed packet, a session's connect deadline).
    """
    eio.on(event, wrap(eio.handlers[event]))


def sockets_of(eio: engineio.AsyncServer) -> dict[str, Any]:
    """The Engine.IO server's table of open sessions, by Engine.IO sid (read it; do not keep it).

    Uses ``AsyncServer.sockets``: python-engineio finds a session's socket there for every request
    and every send; the gateway's own WebSocket sessions are entered there too.
    """
    sockets: dict[str, Any] = eio.sockets
    return sockets


def add_socket(eio: engineio.AsyncServer, socket: Any) -> None:
    """Enters a session the gateway serves itself into ``AsyncServer.sockets``, the server's table."""
    eio.sockets[socket.sid] = socket


def forget_socket(eio: engineio.AsyncServer, socket: Any) -> None:
    """Removes a closed session from ``AsyncServer.sockets``, unless another one took its sid since.

    python-engineio removes a session there only when a request of its own finds it closed; one closed
    by the gateway (a malformed POST, a deaf peer, a missed connect) would stay until then.
    """
    if eio.sockets.get(socket.sid) is socket:
        del eio.sockets[socket.sid]


def take_all_sockets(eio: engineio.AsyncServer) -> list[Any]:
    """Every open session, the table emptied (at a stop), as ``AsyncServer.disconnect()`` does itself."""
    sockets = list(eio.sockets.values())
    eio.sockets = {}
    return sockets


def max_packets_per_payload() -> int:
    """How many packets python-engineio decodes from one long-polling POST (more: an error).

    Uses the class attribute ``engineio.payload.Payload.max_decode_packets`` (16).
    """
    limit: int = eio_payload.Payload.max_decode_packets
    return limit


def open_packet(eio: engineio.AsyncServer, sid: str, upgrades: list[str]) -> eio_packet.Packet:
    """Engine.IO's OPEN packet for a new session, with the fields python-engineio's own handshake sends.

    Mirrors ``AsyncServer._handle_connect``, reading the server's ``ping_timeout``, ``ping_interval``,
    ``ping_interval_grace_period`` and ``max_http_buffer_size`` attributes.
    """
    return eio_packet.Packet(
        eio_packet.OPEN,
        {
            "sid": sid,
            "upgrades": upgrades,
            "pingTimeout": int(eio.ping_timeout * 1000),
            "pingInterval": int(eio.ping_interval + eio.ping_interval_grace_period) * 1000,
            "maxPayload": eio.max_http_buffer_size,
        },
    )


# --- python-engineio: a session -------------------------------------------------------------------


class EngineIOSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """python-engineio's socket, as the base of a session the gateway serves itself.

    Uses ``engineio.async_socket.AsyncSocket``: the gateway's own WebSocket session is one of these,
    in the server's socket table, so python-socketio's emits, disconnects and shutdown reach it as any
    other. It relies on ``AsyncSocket.receive(pkt)`` calling ``self.schedule_ping()`` for a PONG,
    ``self.send(pkt)`` for an UPGRADE's NOOP and ``self.close(wait=False, abort=True, reason=...)``
    for a CLOSE, and raising ``UnknownPacketError`` otherwise; on ``BaseSocket.__init__`` setting
    ``server``, ``sid``, ``queue``, ``last_ping``, ``connected``, ``upgrading``, ``upgraded``,
    ``closing`` and ``closed``. A subclass overrides ``send``, ``close`` and ``schedule_ping``.
    """

    server: engineio.AsyncServer
    sid: str
    closed: bool
    closing: bool
    connected: bool
    upgraded: bool
    last_ping: float | None

    def __init__(self, eio: engineio.AsyncServer) -> None:
        super().__init__(eio, eio.generate_id())

    async def receive_packet(self, data: str | bytes) -> None:
        """Decodes one packet from the client and has python-engineio's ``AsyncSocket.receive`` act on it."""
        await self.receive(eio_packet.Packet(encoded_packet=data))


async def close_session(socket: Any, *, abort: bool, reason: str) -> None:
    """Closes a python-engineio session without waiting for its client to take the CLOSE packet.

    Uses ``AsyncSocket.close(wait=False, abort=..., reason=...)``: python-engineio's own
    ``AsyncServer.disconnect`` waits (``queue.join()``) until the client has read the CLOSE, which a
    client that never reads or polls again never does. Runs the disconnect handlers; with
    ``abort=False`` a CLOSE packet is queued for the client.
    """
    await socket.close(wait=False, abort=abort, reason=reason)


def replace_post_handler(socket: Any, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Has ``handler(environ)`` read this long-polling session's POSTs instead of python-engineio.

    Uses the socket's ``handle_post_request`` method, which ``AsyncServer.handle_request`` calls for a
    POST of a session not upgraded; an ``EngineIOError`` it raises makes python-engineio answer 400
    and disconnect the session.
    """
    socket.handle_post_request = handler


async def receive(socket: Any, pkt: eio_packet.Packet) -> None:
    """Has a python-engineio session act on one packet from its client (``AsyncSocket.receive``).

    Raises:
        UnknownPacketError: a packet type a client does not send (open, ping, noop).
    """
    await socket.receive(pkt)


async def read_post_body(environ: dict[str, Any], length: int) -> bytes:
    """All ``length`` bytes of a long-polling POST's body, however many TCP segments it spans.

    Uses the aiohttp driver's ``environ["wsgi.input"]`` (the request's ``StreamReader``):
    python-engineio's own ``read(length)`` returns what has arrived so far, so a body split across
    segments was cut short (and a stalled one answered at once).

    Raises:
        asyncio.IncompleteReadError: the client went away mid-body.
    """
    body: bytes = await environ["wsgi.input"].readexactly(length)
    return body


def is_open(socket: Any) -> bool:
    """Whether a python-engineio session is neither closing nor closed (``BaseSocket.closing``/``closed``)."""
    return not (socket.closing or socket.closed)


def is_closed(socket: Any) -> bool:
    """Whether a python-engineio session has closed (``BaseSocket.closed``)."""
    return bool(socket.closed)


def session_queue(socket: Any) -> asyncio.Queue[Any]:
    """The python-engineio session's queue of packets to send (``BaseSocket.queue``)."""
    queue: asyncio.Queue[Any] = socket.queue
    return queue


def end_pending_poll(socket: Any) -> None:
    """Ends a python-engineio session's pending long-poll (or its WebSocket writer) at once.

    Uses the session's queue: a NOOP answers a waiting poll, and ``None`` is the stop python-engineio's
    poll and WebSocket writer take to end (``AsyncSocket.poll`` returns no packets for it). A session
    closed with ``abort=True`` leaves both waiting until the ping timeout otherwise.
    """
    socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))
    socket.queue.put_nowait(None)


def is_plain_websocket(socket: Any) -> bool:
    """Whether a python-engineio session is open on a WebSocket, not polling or mid-upgrade.

    Reads ``BaseSocket.closing``, ``closed``, ``upgrading`` and ``upgraded``.
    """
    return not (socket.closing or socket.closed or socket.upgrading or not socket.upgraded)


def is_upgraded(socket: Any) -> bool:
    """Whether a python-engineio session's transport is (now) its WebSocket (``BaseSocket.upgraded``)."""
    return bool(socket.upgraded)


def writer_idle(socket: Any) -> bool:
    """Whether a python-engineio session's writer has written everything queued and waits for more.

    Uses ``asyncio.Queue._getters``: a waiting getter means the writer is parked in ``queue.get()``
    (``AsyncSocket.poll``), so every packet it took is written; an empty queue without a getter
    means it holds packets it has not written yet. Something written into the session's transport
    now then cannot overtake anything queued before.
    """
    queue = socket.queue
    return bool(queue.empty() and queue._getters)


# --- python-engineio: the aiohttp WebSocket driver ------------------------------------------------


class AiohttpWebSocketDriver(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp WebSocket driver, as the base of the gateway's driver.

    Uses ``engineio.async_drivers.aiohttp.WebSocket``: built as ``driver(handler, server)`` where
    ``handler`` is the session's bound ``AsyncSocket._websocket_handler``; awaited with the request's
    environ, it prepares an aiohttp ``WebSocketResponse`` (kept as ``_sock``, the environ as
    ``environ``) and runs ``handler(self)``, which reads with ``wait()`` (a str or bytes; ``OSError``
    ends the session) and writes with ``send()``.
    """

    handler: Callable[[Any], Awaitable[Any]]
    server: engineio.AsyncServer

    @property
    def socket(self) -> Any:
        """The python-engineio session this driver serves (``handler.__self__``)."""
        return self.handler.__self__  # type: ignore[attr-defined]

    @property
    def response(self) -> web.WebSocketResponse | None:
        """The aiohttp WebSocket, once prepared (``_sock``)."""
        response: web.WebSocketResponse | None = self._sock
        return response

    async def prepare(self, environ: dict[str, Any], *, compress: bool) -> web.WebSocketResponse:
        """python-engineio's ``__call__`` up to running the handler, with per-message deflate as asked."""
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=compress)
        await self._sock.prepare(environ["aiohttp.request"])
        self.environ = environ
        return self._sock


def aiohttp_request(environ: dict[str, Any]) -> web.Request | None:
    """The aiohttp request of an environ python-engineio's aiohttp driver built (``"aiohttp.request"``)."""
    request: web.Request | None = environ.get("aiohttp.request")
    return request


# --- python-socketio -------------------------------------------------------------------------------


def session_environ(sio: socketio.AsyncServer, eio_sid: str) -> dict[str, Any] | None:
    """The environ of an Engine.IO session's handshake, as python-socketio keeps it (``sio.environ``)."""
    environ: dict[str, Any] | None = sio.environ.get(eio_sid)
    return environ


def namespace_sid(sio: socketio.AsyncServer, eio_sid: str, namespace: str = "/") -> str | None:
    """An Engine.IO session's Socket.IO sid in ``namespace``; None: not connected (``sid_from_eio_sid``)."""
    sid: str | None = sio.manager.sid_from_eio_sid(eio_sid, namespace)
    return sid


def engineio_sid(sio: socketio.AsyncServer, sid: str, namespace: str = "/") -> str | None:
    """The Engine.IO sid of a Socket.IO socket, None once it is gone (``manager.eio_sid_from_sid``)."""
    eio_sid: str | None = sio.manager.eio_sid_from_sid(sid, namespace)
    return eio_sid


def event_packet(sio: socketio.AsyncServer, namespace: str, data: list[Any]) -> eio_packet.Packet:
    """An Engine.IO MESSAGE carrying a Socket.IO EVENT, encoded once (``AsyncServer.packet_class``).

    Raises:
        ValueError: the event has binary attachments (more than one Engine.IO packet).
    """
    encoded = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=data).encode()
    if isinstance(encoded, list):
        raise ValueError("an event with binary attachments is several Engine.IO packets")
    return eio_packet.Packet(eio_packet.MESSAGE, encoded)


RoomKey = tuple[str, str]  # (namespace, sid)


class RoomIndexManager:
    """Mixed into a python-socketio manager: keeps ``(namespace, sid) → rooms`` in step with its tables.

    Overrides ``BaseManager.basic_enter_room(sid, namespace, room, eio_sid=None)`` and
    ``basic_leave_room(sid, namespace, room)``, which every entry into and exit from a room goes
    through, and re-implements ``basic_disconnect(sid, namespace, **kwargs)`` with the index in place
    of its scan of every room; so it writes python-socketio's ``rooms``, ``callbacks``,
    ``pending_connect`` and ``pending_disconnect`` as the original does.
    """

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rooms_of: dict[RoomKey, set[str | None]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: str | None, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio's own version, with the scan of every room replaced by the index.
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[str]:
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]

    @property
    def indexed_sockets(self) -> int:
        """Sockets with at least one room (for tests: the index must not outlive its sockets)."""
        return len(self._rooms_of)


Deliver = Callable[[list[str], Any], Awaitable[None]]


class DirectEmitManager(socketio.AsyncManager):  # type: ignore[misc]
    """A python-socketio manager whose room emits hand their packet to ``deliver`` once.

    Overrides ``AsyncManager.emit(event, data, namespace, room=None, skip_sid=None, callback=None,
    to=None, **kwargs)`` for emits without a callback: the packet is built with the server's
    ``packet_class``, the recipients read with ``get_participants`` less the sockets still in
    ``pending_connect`` (their CONNECT is not out yet).
    """

    deliver: Deliver | None = None

    def deliver_with(self, deliver: Deliver) -> None:
        """Where room emits go from now on: ``deliver(eio_sids, engineio_packet)``."""
        self.deliver = deliver

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        deliver = self.deliver
        # kwargs: python-socketio's own flags (ignore_queue), which mean nothing to a local delivery.
        if deliver is None or callback is not None:
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
            )
            return
        room = to or room
        if namespace not in self.rooms:
            return
        # The argument rules of python-socketio's AsyncManager.emit.
        if isinstance(data, tuple):
            arguments = list(data)
        elif data is not None:
            arguments = [data]
        else:
            arguments = []
        try:
            pkt = event_packet(self.server, namespace, [event, *arguments])
        except ValueError:  # binary attachments: python-socketio's own path
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, to=to)
            return
        skipped = set(skip_sid if isinstance(skip_sid, list) else [skip_sid])
        # A socket whose connect handler is still running has no CONNECT packet out yet: it must
        # not hear an event first (the gateway tells a joiner its counts once it is connected).
        skipped.update(self.pending_connect.get(namespace, ()))
        participants = self.get_participants(namespace, room)
        recipients = [eio_sid for sid, eio_sid in participants if sid not in skipped]
        if recipients:
            await deliver(recipients, pkt)
