"""Each touch point of socket_gateway/transport/library_internals.py against the installed libraries.

A test per touch point, on real python-engineio / python-socketio objects (servers, sockets, a real
aiohttp server for the HTTP paths): a change of the private thing a touch point uses fails here,
naming it, instead of silently in a viewer's session. The last tests check that nothing else in the
gateway imports either library or reaches into its private names.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import inspect
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import engineio  # type: ignore[import-untyped]
import pytest
import socketio  # type: ignore[import-untyped]
from aiohttp import web
from engineio import async_socket
from engineio.async_drivers import aiohttp as engineio_aiohttp  # type: ignore[import-untyped]
from socketio.base_manager import BaseManager  # type: ignore[import-untyped]

from socket_gateway.live.room_index import IndexedManager
from socket_gateway.transport import library_internals as internals

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / "socket_gateway"


def engineio_server(**options: Any) -> Any:
    return engineio.AsyncServer(async_mode="aiohttp", **options)


def environ(**headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "wsgi.url_scheme": "http", "HTTP_HOST": "gw.test"}
    env.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    return env


@asynccontextmanager
async def served(eio: Any) -> AsyncIterator[str]:
    """``eio`` attached to a real aiohttp server on a loopback port; yields its Engine.IO URL."""
    app = web.Application()
    eio.attach(app, engineio_path="engine.io")
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/engine.io/"
    finally:
        await runner.cleanup()


async def polling_handshake(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url, params={"EIO": "4", "transport": "polling"}) as response:
        assert response.status == 200
        body = await response.text()
    assert body[0] == "0"
    sid: str = json.loads(body[1:])["sid"]
    return sid


# --- versions ----------------------------------------------------------------------------------


def test_the_versions_written_for_are_the_installed_and_the_pinned_ones() -> None:
    for distribution, version in internals.WRITTEN_FOR.items():
        assert importlib.metadata.version(distribution) == version
        assert f'"{distribution}=={version}"' in (REPO / "pyproject.toml").read_text()
    internals.check_library_versions()


def test_another_installed_version_is_a_configuration_error_naming_the_package_and_both_versions() -> None:
    versions = {"python-engineio": "4.15.1", "python-socketio": "5.19.0"}
    with pytest.raises(internals.LibraryVersionError) as raised:
        internals.check_library_versions(versions.__getitem__)
    assert raised.value.variable == "python-socketio"
    assert "installed 5.19.0" in str(raised.value)
    assert "5.18.1" in str(raised.value)

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    with pytest.raises(internals.LibraryVersionError, match="python-engineio: installed none"):
        internals.check_library_versions(missing)


# --- python-engineio: the server ------------------------------------------------------------------


async def test_trigger_event_runs_a_handler_now_with_its_arguments_and_returns_its_answer() -> None:
    eio = engineio_server()
    seen: list[tuple[Any, ...]] = []

    async def on_connect(sid: str, env: dict[str, Any]) -> bool:
        seen.append((sid, env))
        return False

    eio.on("connect", on_connect)
    assert await internals.trigger_event(eio, "connect", "s1", {"k": 1}) is False
    assert seen == [("s1", {"k": 1})]


def test_origin_refused_follows_cors_allowed_origins_as_python_engineio_resolves_it() -> None:
    listed = engineio_server(cors_allowed_origins=["https://shop.test"])
    assert not internals.origin_refused(listed, environ(origin="https://shop.test"))
    assert internals.origin_refused(listed, environ(origin="https://evil.test"))
    assert not internals.origin_refused(listed, environ())  # no Origin: not a browser's cross-origin
    assert not internals.origin_refused(
        engineio_server(cors_allowed_origins="*"), environ(origin="https://x")
    )
    assert not internals.origin_refused(engineio_server(cors_allowed_origins=[]), environ(origin="https://x"))
    # None (the default): the request's own host only.
    own = engineio_server()
    assert not internals.origin_refused(own, environ(origin="http://gw.test"))
    assert internals.origin_refused(own, environ(origin="http://other.test"))


async def test_cors_headers_are_python_engineios_for_an_aiohttp_request() -> None:
    from aiohttp.test_utils import make_mocked_request  # aiohttp's own request object, no socket

    eio = engineio_server(cors_allowed_origins=["https://shop.test"], cors_credentials=True)
    request = make_mocked_request("GET", "/engine.io/?EIO=4", headers={"Origin": "https://shop.test"})
    assert internals.cors_headers(eio, request) == [
        ("Access-Control-Allow-Origin", "https://shop.test"),
        ("Access-Control-Allow-Credentials", "true"),
    ]


def test_the_websocket_driver_table_is_replaced_for_one_server_only() -> None:
    first, second = engineio_server(), engineio_server()
    assert internals.websocket_driver(first) is engineio_aiohttp.WebSocket
    assert first._async is engineio_aiohttp._async  # shared by every server: why it is replaced, not changed

    def driver(handler: Any, server: Any) -> Any:
        raise AssertionError("not called here")

    internals.install_websocket_driver(first, driver)
    assert internals.websocket_driver(first) is driver
    assert internals.websocket_driver(second) is engineio_aiohttp.WebSocket
    assert engineio_aiohttp._async["websocket"] is engineio_aiohttp.WebSocket
    # What python-engineio builds an upgrade's driver from: _async["websocket"](handler, server).
    assert "self.server._async['websocket'](" in inspect.getsource(
        async_socket.AsyncSocket._upgrade_websocket
    )


async def test_plain_requests_are_answered_with_plain_responses_and_aiohttps_as_before() -> None:
    """install_plain_requests replaces _async["translate_request"] / ["make_response"] on one server:
    a marked environ is answered with a PlainResponse; an aiohttp request, on a real server, as before."""
    eio = engineio_server(cors_allowed_origins=["https://shop.test"], cors_credentials=True)
    other = engineio_server()
    internals.install_plain_requests(eio)
    assert other._async is engineio_aiohttp._async  # the shared table is left alone
    assert engineio_aiohttp._async["translate_request"] is engineio_aiohttp.translate_request
    plain = {
        internals.PLAIN_REQUEST: True,
        **environ(origin="https://shop.test"),
        "QUERY_STRING": "EIO=4&transport=polling",
        "PATH_INFO": "/engine.io/",
    }
    answer = await internals.handle_plain_request(eio, plain)
    assert answer.status == "200 OK"
    assert answer.body.startswith(b"0{")
    assert ("Access-Control-Allow-Origin", "https://shop.test") in answer.headers
    assert internals.cors_headers_of(eio, plain) == [
        ("Access-Control-Allow-Origin", "https://shop.test"),
        ("Access-Control-Allow-Credentials", "true"),
    ]
    refused = await internals.handle_plain_request(eio, {**plain, "QUERY_STRING": "EIO=3&transport=polling"})
    assert refused.status.startswith("400")
    # What handle_request calls them with: translate_request(*args), make_response(status, headers,
    # payload, environ), both looked up in self._async.
    assert "self._async['translate_request']" in inspect.getsource(engineio.AsyncServer.handle_request)
    assert "self._async['make_response']" in inspect.getsource(engineio.AsyncServer._make_response)
    async with served(eio) as url, aiohttp.ClientSession() as http:
        sid = await polling_handshake(http, url)
        assert sid in eio.sockets


async def test_a_plain_upgrade_is_refused_with_a_plain_response_or_returns_what_the_driver_returned() -> None:
    """handle_plain_upgrade relies on handle_request returning a non-dict answer as it is: for an
    upgrade, AsyncSocket._upgrade_websocket returns the driver's own __call__ result (None for a
    connection the gateway's listener took over)."""
    eio = engineio_server()
    internals.install_plain_requests(eio)
    unknown = {
        internals.PLAIN_REQUEST: True,
        **environ(upgrade="websocket", connection="Upgrade"),
        "QUERY_STRING": "EIO=4&transport=websocket&sid=nobody",
        "PATH_INFO": "/engine.io/",
    }
    refused = await internals.handle_plain_upgrade(eio, unknown)
    assert refused is not None
    assert refused.status.startswith("400")
    assert "return await ws(environ)" in inspect.getsource(async_socket.AsyncSocket._upgrade_websocket)
    handle_request = inspect.getsource(engineio.AsyncServer.handle_request)
    assert "packets = await socket.handle_get_request(" in handle_request
    assert "if not isinstance(r, dict):\n            return r" in handle_request


def test_the_queue_factory_makes_every_new_sessions_queue() -> None:
    eio = engineio_server()
    made: list[asyncio.Queue[Any]] = []

    def factory() -> asyncio.Queue[Any]:
        made.append(asyncio.Queue())
        return made[-1]

    internals.install_queue_factory(eio, factory)
    socket = async_socket.AsyncSocket(eio, "s1")
    assert made == [socket.queue]
    assert internals.session_queue(socket) is socket.queue


async def test_a_wrapped_event_handler_runs_in_place_of_python_socketios() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    eio = sio.eio
    original = eio.handlers["message"]  # python-socketio registered it
    assert original == sio._handle_eio_message
    calls: list[str] = []

    def wrap(handler: internals.EventHandler) -> internals.EventHandler:
        assert handler == original

        async def wrapped(eio_sid: str, data: Any) -> None:
            calls.append(eio_sid)

        return wrapped

    internals.wrap_event_handler(eio, "message", wrap)
    await internals.trigger_event(eio, "message", "s1", "2")
    assert calls == ["s1"]


def test_the_socket_table_is_read_entered_forgotten_and_taken() -> None:
    eio = engineio_server()
    socket = async_socket.AsyncSocket(eio, "s1")
    internals.add_socket(eio, socket)
    assert internals.sockets_of(eio) == {"s1": socket}
    assert eio.sockets is internals.sockets_of(eio)
    internals.forget_socket(eio, async_socket.AsyncSocket(eio, "s1"))  # another socket of that sid
    assert internals.sockets_of(eio) == {"s1": socket}
    internals.forget_socket(eio, socket)
    assert internals.sockets_of(eio) == {}
    internals.add_socket(eio, socket)
    assert internals.take_all_sockets(eio) == [socket]
    assert eio.sockets == {}


def test_max_packets_per_payload_is_what_python_engineio_decodes_from_one_post() -> None:
    limit = internals.max_packets_per_payload()
    assert limit == 16
    engineio.payload.Payload(encoded_payload="\x1e".join(["4a"] * limit))
    with pytest.raises(ValueError, match="Too many packets"):
        engineio.payload.Payload(encoded_payload="\x1e".join(["4a"] * (limit + 1)))


async def test_the_open_packet_carries_the_fields_of_python_engineios_own_handshake() -> None:
    eio = engineio_server(ping_interval=7, ping_timeout=3, max_http_buffer_size=4096)
    ours = internals.open_packet(eio, "abc", upgrades=["websocket"]).data
    async with (
        served(eio) as url,
        aiohttp.ClientSession() as http,
        http.get(url, params={"EIO": "4", "transport": "polling"}) as response,
    ):
        theirs = json.loads((await response.text())[1:])
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if k != "sid"} == {k: v for k, v in theirs.items() if k != "sid"}


# --- python-engineio: a session -------------------------------------------------------------------


class RecordingSocket(internals.EngineIOSocket):
    """The base the gateway's own session has, with the hooks it overrides recorded."""

    def __init__(self, eio: Any) -> None:
        super().__init__(eio)
        self.calls: list[Any] = []

    async def send(self, pkt: Any) -> None:
        self.calls.append(("send", pkt.packet_type))

    async def close(self, wait: bool = True, abort: bool = False, reason: str | None = None) -> None:
        self.calls.append(("close", wait, abort, reason))

    def schedule_ping(self) -> None:
        self.calls.append("schedule_ping")


async def test_engineio_socket_sets_the_attributes_the_session_reads() -> None:
    eio = engineio_server()
    socket = RecordingSocket(eio)
    assert socket.server is eio
    assert isinstance(socket.sid, str)
    assert socket.sid
    assert (socket.connected, socket.upgrading, socket.upgraded, socket.closing, socket.closed) == (
        False,
        False,
        False,
        False,
        False,
    )
    assert isinstance(socket.last_ping, float)
    assert isinstance(socket.queue, asyncio.Queue)
    assert internals.is_open(socket)
    assert not internals.is_closed(socket)
    assert not internals.is_upgraded(socket)
    assert not internals.is_plain_websocket(socket)
    socket.upgraded = True
    assert internals.is_upgraded(socket)
    assert internals.is_plain_websocket(socket)
    socket.upgrading = True
    assert not internals.is_plain_websocket(socket)
    socket.upgrading, socket.closing = False, True
    assert not internals.is_open(socket)
    assert not internals.is_plain_websocket(socket)
    socket.closed = True
    assert internals.is_closed(socket)


async def test_engineio_socket_receive_calls_the_hooks_the_session_overrides() -> None:
    """A PONG must reach schedule_ping (the session's ping timer), a CLOSE close(), an UPGRADE send()."""
    eio = engineio_server(async_handlers=False)  # as python-socketio makes its Engine.IO server
    messages: list[tuple[str, Any]] = []

    async def on_message(sid: str, data: Any) -> None:
        messages.append((sid, data))

    eio.on("message", on_message)
    socket = RecordingSocket(eio)
    await socket.receive_packet("3")  # PONG
    await socket.receive_packet("5")  # UPGRADE
    await socket.receive_packet("4hello")  # MESSAGE
    await socket.receive_packet("1")  # CLOSE
    assert socket.calls == [
        "schedule_ping",
        ("send", internals.EIO_NOOP),
        ("close", False, True, eio.reason.CLIENT_DISCONNECT),
    ]
    assert messages == [(socket.sid, "hello")]
    for not_from_a_client in ("0", "2", "6"):
        with pytest.raises(internals.UnknownPacketError):
            await socket.receive_packet(not_from_a_client)
    # The hooks exist on python-engineio's socket with the signatures the session overrides.
    assert list(inspect.signature(async_socket.AsyncSocket.close).parameters) == [
        "self",
        "wait",
        "abort",
        "reason",
    ]
    assert list(inspect.signature(async_socket.AsyncSocket.schedule_ping).parameters) == ["self"]
    assert list(inspect.signature(async_socket.AsyncSocket.send).parameters) == ["self", "pkt"]


async def test_receive_hands_one_packet_to_a_python_engineio_session() -> None:
    eio = engineio_server(async_handlers=False)
    messages: list[Any] = []

    async def on_message(sid: str, data: Any) -> None:
        messages.append(data)

    eio.on("message", on_message)
    socket = async_socket.AsyncSocket(eio, "s1")
    await internals.receive(socket, internals.EngineIOPacket(internals.EIO_MESSAGE, "x"))
    assert messages == ["x"]


async def test_close_session_runs_the_disconnect_handler_and_does_not_wait_for_the_client() -> None:
    eio = engineio_server()
    reasons: list[Any] = []

    async def on_disconnect(sid: str, reason: str) -> None:
        reasons.append(reason)

    eio.on("disconnect", on_disconnect)
    socket = async_socket.AsyncSocket(eio, "s1")
    socket.last_ping = None  # a CLOSE is queued only while the ping timeout has not passed
    # Nobody reads the queue: with wait=True this would never return.
    await asyncio.wait_for(
        internals.close_session(socket, abort=False, reason=eio.reason.TRANSPORT_ERROR), timeout=5
    )
    assert reasons == [eio.reason.TRANSPORT_ERROR]
    assert socket.closed
    assert socket.queue.get_nowait().packet_type == internals.EIO_CLOSE


async def test_end_pending_poll_answers_a_waiting_poll_and_stops_the_next() -> None:
    eio = engineio_server()
    socket = async_socket.AsyncSocket(eio, "s1")
    internals.end_pending_poll(socket)
    assert [pkt.packet_type for pkt in await socket.poll()] == [internals.EIO_NOOP]
    assert await socket.poll() == []  # the stop: python-engineio's writer and poll end on it


async def test_writer_idle_is_true_only_while_the_writer_waits_on_an_empty_queue() -> None:
    eio = engineio_server()
    socket = async_socket.AsyncSocket(eio, "s1")
    assert not internals.writer_idle(socket)  # nobody waits: a writer would hold what it took
    waiting = asyncio.ensure_future(socket.queue.get())
    await asyncio.sleep(0)
    assert internals.writer_idle(socket)
    socket.queue.put_nowait("x")
    assert not internals.writer_idle(socket)
    assert await waiting == "x"


async def test_a_polling_post_is_read_by_the_replaced_handler_and_its_error_answers_400() -> None:
    eio = engineio_server()
    bodies: list[bytes] = []

    async def on_connect(sid: str, env: dict[str, Any]) -> None:
        socket = internals.sockets_of(eio)[sid]

        async def read(env: dict[str, Any]) -> None:
            assert internals.aiohttp_request(env) is not None
            body = await internals.read_post_body(env, int(env["CONTENT_LENGTH"]))
            bodies.append(body)
            if body == b"bad":
                # Closed first: python-engineio's own disconnect after the error waits for the client
                # to poll the CLOSE packet (the reason SessionGuard.refuse_post closes it itself).
                await internals.close_session(socket, abort=True, reason=eio.reason.TRANSPORT_ERROR)
                raise internals.EngineIOError("bad")

        internals.replace_post_handler(socket, read)

    eio.on("connect", on_connect)
    async with served(eio) as url, aiohttp.ClientSession() as http:
        sid = await polling_handshake(http, url)
        query = {"EIO": "4", "transport": "polling", "sid": sid}
        async with http.post(url, params=query, data=b"4hello") as response:
            assert response.status == 200
        async with http.post(url, params=query, data=b"bad") as response:
            assert response.status == 400
    assert bodies == [b"4hello", b"bad"]


# --- python-engineio: the aiohttp WebSocket driver ------------------------------------------------


async def test_the_driver_base_serves_a_polling_sessions_upgrade() -> None:
    """An upgrade builds the driver from (socket._websocket_handler, server), awaits it with the environ."""
    eio = engineio_server()
    seen: dict[str, Any] = {}

    class Driver(internals.AiohttpWebSocketDriver):
        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            response = await self.prepare(environ, compress=False)
            seen["socket"], seen["response"] = self.socket, self.response
            seen["request"] = internals.aiohttp_request(self.environ)
            await self.handler(self)
            return response

        async def wait(self) -> str | bytes:
            data: str | bytes = await super().wait()
            seen.setdefault("read", []).append(data)
            return data

    internals.install_websocket_driver(eio, Driver)
    async with served(eio) as url, aiohttp.ClientSession() as http:
        sid = await polling_handshake(http, url)
        ws_url = url.replace("http", "ws", 1)
        async with http.ws_connect(ws_url, params={"EIO": "4", "transport": "websocket", "sid": sid}) as ws:
            await ws.send_str("2probe")
            assert await ws.receive_str() == "3probe"
            await ws.send_str("5")
            # The NOOP that ends the session's poll, sent on the WebSocket as no poll waits.
            assert await ws.receive_str(timeout=5) == "6"
        # The client closed its WebSocket: the driver's wait() ends, and with it the session.
        for _ in range(200):
            if sid not in internals.sockets_of(eio):
                break
            await asyncio.sleep(0.01)
        assert sid not in internals.sockets_of(eio)
    assert seen["socket"].sid == sid
    assert isinstance(seen["socket"], async_socket.AsyncSocket)
    assert isinstance(seen["response"], web.WebSocketResponse)
    assert seen["request"] is not None
    assert seen["read"] == ["2probe", "5"]


async def test_the_driver_base_wait_raises_oserror_when_the_websocket_closes() -> None:
    eio = engineio_server()
    outcome: list[Any] = []

    class Driver(internals.AiohttpWebSocketDriver):
        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            response = await self.prepare(environ, compress=False)
            try:
                await self.wait()
            except OSError as error:
                outcome.append(error)
            return response

    internals.install_websocket_driver(eio, Driver)
    async with served(eio) as url, aiohttp.ClientSession() as http:
        sid = await polling_handshake(http, url)
        ws_url = url.replace("http", "ws", 1)
        async with http.ws_connect(ws_url, params={"EIO": "4", "transport": "websocket", "sid": sid}):
            pass
        for _ in range(200):
            if outcome:
                break
            await asyncio.sleep(0.01)
    assert len(outcome) == 1
    assert isinstance(outcome[0], OSError)


def test_aiohttp_request_is_where_python_engineios_driver_puts_the_request() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("POST", "/engine.io/", headers={"Content-Length": "3"})
    env = engineio_aiohttp.translate_request(request)
    assert internals.aiohttp_request(env) is request
    assert env["wsgi.input"] is request.content
    assert internals.aiohttp_request({}) is None


# --- python-socketio -------------------------------------------------------------------------------


async def test_session_environ_namespace_sid_and_engineio_sid_follow_a_real_connect() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = socketio.AsyncClient()
    try:
        await client.connect(f"http://127.0.0.1:{runner.addresses[0][1]}", transports=["websocket"])
        (eio_sid,) = internals.sockets_of(sio.eio)
        environ_seen = internals.session_environ(sio, eio_sid)
        assert environ_seen is not None
        assert internals.aiohttp_request(environ_seen) is not None
        sid = internals.namespace_sid(sio, eio_sid)
        assert sid is not None
        assert sid == client.get_sid("/")
        assert internals.engineio_sid(sio, sid) == eio_sid
        assert internals.namespace_sid(sio, "no-such-session") is None
        assert internals.engineio_sid(sio, "no-such-sid") is None
    finally:
        await client.disconnect()
        await runner.cleanup()


def test_event_packet_is_one_engineio_message_of_a_socketio_event() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    pkt = internals.event_packet(sio, "/", ["viewerCountUpdate", {"a": 1}])
    assert pkt.packet_type == internals.EIO_MESSAGE
    assert pkt.encode() == '42["viewerCountUpdate",{"a":1}]'
    with pytest.raises(ValueError, match="binary attachments"):
        internals.event_packet(sio, "/", ["binary", b"\x00"])


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[tuple[list[str], str]] = []

    async def __call__(self, eio_sids: list[str], pkt: Any) -> None:
        self.delivered.append((eio_sids, pkt.encode()))


def connected(kind: Callable[[], Any], *eio_sids: str) -> tuple[Any, list[str]]:
    server = socketio.AsyncServer(async_mode="aiohttp", client_manager=kind())
    numbers = iter(range(100))
    server.eio.generate_id = lambda: f"sid{next(numbers)}"  # so that two managers compare
    manager = server.manager
    sids = []
    for eio_sid in eio_sids:
        sid = BaseManager.pre_connect(manager, eio_sid, "/")
        BaseManager.connect(manager, sid, "/")
        sids.append(sid)
    return manager, sids


def test_the_room_index_keeps_python_socketios_tables_as_its_own_basic_disconnect_does() -> None:
    ours, our_sids = connected(IndexedManager, "e1", "e2")
    theirs, their_sids = connected(socketio.AsyncManager, "e1", "e2")
    for manager, sids in ((ours, our_sids), (theirs, their_sids)):
        manager.basic_enter_room(sids[0], "/", "auction:a")
        manager.basic_enter_room(sids[1], "/", "auction:a")
        manager.callbacks[sids[0]] = {1: print}
        manager.pending_disconnect.setdefault("/", []).append(sids[0])
        manager.basic_disconnect(sids[0], "/")

    def tables(manager: Any) -> dict[str, dict[str, dict[str, str]]]:
        return {
            namespace: {str(room): dict(members) for room, members in rooms.items()}
            for namespace, rooms in manager.rooms.items()
        }

    assert tables(ours) == tables(theirs)
    assert (ours.callbacks, ours.pending_connect, ours.pending_disconnect) == (
        theirs.callbacks,
        theirs.pending_connect,
        theirs.pending_disconnect,
    )
    assert set(ours.get_rooms(our_sids[1], "/")) == set(theirs.get_rooms(their_sids[1], "/"))
    assert "auction:a" in ours.get_rooms(our_sids[1], "/")
    assert ours.indexed_sockets == 1
    # The methods every room change goes through, with the signatures the index overrides.
    for name, parameters in (
        ("basic_enter_room", ["self", "sid", "namespace", "room", "eio_sid"]),
        ("basic_leave_room", ["self", "sid", "namespace", "room"]),
        ("basic_disconnect", ["self", "sid", "namespace", "kwargs"]),
    ):
        assert list(inspect.signature(getattr(BaseManager, name)).parameters) == parameters
    for method, called in (("disconnect", "basic_disconnect"), ("enter_room", "basic_enter_room")):
        assert f"self.{called}(" in inspect.getsource(getattr(socketio.AsyncManager, method))


async def test_direct_emit_hands_a_room_emit_to_deliver_once_and_skips_pending_connects() -> None:
    manager, sids = connected(IndexedManager, "e1", "e2", "e3")
    recorder = Recorder()
    manager.deliver_with(recorder)
    for sid in sids:
        manager.basic_enter_room(sid, "/", "auction:a")
    manager.pending_connect["/"] = [sids[2]]  # its connect handler still runs
    await manager.emit("viewerCountUpdate", {"n": 1}, "/", room="auction:a", skip_sid=sids[1])
    assert recorder.delivered == [(["e1"], '42["viewerCountUpdate",{"n":1}]')]
    assert list(inspect.signature(socketio.AsyncManager.emit).parameters) == [
        "self",
        "event",
        "data",
        "namespace",
        "room",
        "skip_sid",
        "callback",
        "to",
        "kwargs",
    ]


def test_the_packet_numbers_are_the_protocols() -> None:
    assert (internals.EIO_OPEN, internals.EIO_CLOSE, internals.EIO_PING, internals.EIO_PONG) == (0, 1, 2, 3)
    assert (internals.EIO_MESSAGE, internals.EIO_NOOP) == (4, 6)
    assert (internals.SIO_CONNECT, internals.SIO_DISCONNECT, internals.SIO_EVENT, internals.SIO_ACK) == (
        0,
        1,
        2,
        3,
    )
    assert (internals.SIO_CONNECT_ERROR, internals.SIO_BINARY_EVENT, internals.SIO_BINARY_ACK) == (4, 5, 6)


# --- nothing else reaches into the libraries ------------------------------------------------------

# Private names of python-engineio / python-socketio (and asyncio.Queue's) the gateway relies on;
# none may appear as an attribute outside library_internals.py.
PRIVATE_NAMES = frozenset(
    {
        "_async",
        "_trigger_event",
        "_cors_allowed_origins",
        "_cors_headers",
        "_getters",
        "_sock",
        "_websocket_handler",
        "create_queue",
        "handle_post_request",
        "schedule_ping",
        "basic_disconnect",
        "basic_enter_room",
        "basic_leave_room",
        "pending_connect",
        "pending_disconnect",
        "max_decode_packets",
        "packet_class",
        "sid_from_eio_sid",
        "eio_sid_from_sid",
        "get_participants",
        "handlers",
        "sockets",
        "queue",
        "environ",
        "upgraded",
        "upgrading",
    }
)
LIBRARIES = ("engineio", "socketio")


def gateway_modules() -> list[Path]:
    return sorted(path for path in GATEWAY.rglob("*.py") if path.name != "library_internals.py")


# What of python-socketio's public API the other modules may name (``import socketio``, then these).
PUBLIC_SOCKETIO = frozenset({"AsyncServer", "exceptions.ConnectionRefusedError"})


def library_uses(path: Path) -> list[str]:
    """The imports of either library in a module, less ``import socketio`` used for its public names."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES and (alias.name, alias.asname) != ("socketio", None):
                    found.append(f"{path.name}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            found.append(f"{path.name}:{node.lineno}: from {node.module} import ...")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "socketio"
        ):
            name = node.attr
            parent = parents(tree).get(node)
            if isinstance(parent, ast.Attribute):
                name = f"{name}.{parent.attr}"
            if name not in PUBLIC_SOCKETIO:
                found.append(f"{path.name}:{node.lineno}: socketio.{name}")
    return found


def parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def test_no_other_gateway_module_imports_python_engineio_or_python_socketios_private_names() -> None:
    offenders = [use for path in gateway_modules() for use in library_uses(path)]
    assert offenders == []


def attribute_uses(path: Path, allowed_owners: Callable[[ast.expr], bool]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES and not allowed_owners(node.value):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


def test_no_other_gateway_module_uses_the_libraries_private_names() -> None:
    # The gateway's own session keeps its own ``environ`` and is python-engineio's socket by design
    # (its base class is the touch point); what it reads of itself is ``self``'s.
    def own(owner: ast.expr) -> bool:
        return isinstance(owner, ast.Name) and owner.id == "self"

    offenders = [use for path in gateway_modules() for use in attribute_uses(path, own)]
    assert offenders == []


def test_the_scans_find_what_they_look_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import socketio\nimport engineio\nfrom socketio import packet\n"
        "def f(eio, socket):\n    return eio._async['websocket'], socket.queue._getters\n"
        "class M(socketio.AsyncManager):\n    server: socketio.AsyncServer\n"
    )
    assert sorted(attribute_uses(sample, lambda owner: False)) == [
        "sample.py:5: ._async",
        "sample.py:5: ._getters",
        "sample.py:5: .queue",
    ]
    assert library_uses(sample) == [
        "sample.py:2: import engineio",
        "sample.py:3: from socketio import ...",
        "sample.py:6: socketio.AsyncManager",
    ]
