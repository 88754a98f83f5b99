"""The gateway's listener: each accepted connection's request heads read, then served here or by aiohttp.

Viewers connect with ``transports: ["websocket"]`` (the dashboard does): one HTTP upgrade, then
frames. The listening socket's protocol reads the request head itself; a new Engine.IO 4 session
asking for the WebSocket transport is served on the same connection by a ``WebSocketSession``
(``websocket.py``) from then on. A plain long-polling request (socket.io-client's default transports
start with them) is answered here too, by python-engineio without aiohttp around it
(``polling.py``), and the connection is kept for its next request. Anything else — an upgrade of a
polling session, a WebSocket with per-message deflate when compression is configured, probes,
metrics, any request this does not recognise — is handed, with the bytes read so far, to aiohttp's
own protocol, which serves it and the rest of the connection as before (python-engineio's sessions,
bounded by ``session_guard.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from service_common.connection_guard import ConnectionGuard, ConnectionLimits
from service_common.http_server_log import HttpServerLog
from service_common.log_limits import RateLimitedLog
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.frames import accept_header
from socket_gateway.transport.malformed_frames import MalformedFrameLog
from socket_gateway.transport.polling import (
    PollingRequest,
    encode_response,
    parse_polling_request,
    plain_response,
    request_environ,
    with_body,
)
from socket_gateway.transport.upgrade import LISTENER_UPGRADE, ListenerWebSocket
from socket_gateway.transport.websocket import WebSocketSession

logger = logging.getLogger(__name__)

# aiohttp's own limit for a request line plus headers.
MAX_HEAD_BYTES = 8190
# A peer that sends no complete request head in this time is dropped (aiohttp keeps such a
# connection until its keep-alive timeout, 75 s).
HEAD_TIMEOUT_SECONDS = 10.0
# What a refused handshake is answered (as the aiohttp middleware answers one it refuses).
_RATE_LIMITED_BODY = b'{"error": "too many connections; retry later"}'
_INTERNAL_ERROR = plain_response(
    "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")], b"500 Internal Server Error"
)
# Count updates are ~90 bytes, coalesced per room: a megabyte unsent means the peer stopped
# reading minutes ago. Its connection is dropped instead of growing without bound.
DEFAULT_MAX_UNSENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class UpgradeRequest:
    """A request to open a new Engine.IO 4 session on a WebSocket."""

    target: str
    path: str
    query: str
    key: str
    # Header names in lower case; repeated headers joined with "," as a WSGI environ does.
    headers: dict[str, str]

    def offers_deflate(self) -> bool:
        return "permessage-deflate" in self.headers.get("sec-websocket-extensions", "").lower()


def parse_new_session_upgrade(head: bytes, socketio_paths: Collection[str]) -> UpgradeRequest | None:
    """The upgrade request in a request head (without its blank line), or None for anything else.

    None means "not for this path": the request may still be valid HTTP, for aiohttp to serve.
    """
    parsed = _websocket_upgrade(head, socketio_paths)
    if parsed is None or "sid" in parsed[1]:
        return None
    return parsed[0]


def parse_session_upgrade(head: bytes, socketio_paths: Collection[str]) -> UpgradeRequest | None:
    """A long-polling session's upgrade to WebSocket in a request head (it names its ``sid``), or None."""
    parsed = _websocket_upgrade(head, socketio_paths)
    if parsed is None or len(parsed[1].get("sid", ())) != 1:
        return None
    return parsed[0]


def _websocket_upgrade(
    head: bytes, socketio_paths: Collection[str]
) -> tuple[UpgradeRequest, dict[str, list[str]]] | None:
    lines = head.decode("latin-1").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or request_line[0] != "GET" or request_line[2] != "HTTP/1.1":
        return None
    target = request_line[1]
    path, _, query = target.partition("?")
    if path not in socketio_paths:
        return None
    params = parse_qs(query, keep_blank_values=True)
    if params.get("EIO") != ["4"] or params.get("transport") != ["websocket"]:
        return None
    if "j" in params:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None  # folded or malformed: aiohttp answers such requests
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    if "content-length" in headers or "transfer-encoding" in headers:
        return None
    if headers.get("upgrade", "").lower() != "websocket":
        return None
    if "upgrade" not in (token.strip().lower() for token in headers.get("connection", "").split(",")):
        return None
    if headers.get("sec-websocket-version") != "13":
        return None
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return UpgradeRequest(target, path, query, key, headers), params


def environ_of(request: UpgradeRequest, peer: tuple[str, int] | None) -> dict[str, Any]:
    """The WSGI-style environ python-engineio's aiohttp driver builds, from this request."""
    environ = request_environ("GET", request.target, peer)
    environ["wsgi.url_scheme"] = request.headers.get("x-forwarded-proto", "http")
    for name, value in request.headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


class WebSocketEndpoint:
    """Serves new WebSocket sessions of one Engine.IO server; the listener's protocols come from here.

    Args:
        eio: the Engine.IO server whose socket table the sessions join.
        socketio_paths: the Engine.IO paths, with their slashes (``/socket.io/``); all serve ``eio``.
        admit: asked once per new session with the peer's address; False refuses it (HTTP 429).
        malformed_frames: where an undecodable Engine.IO packet is reported.
        metrics: counts the sessions dropped for not reading.
        serve_deflate_elsewhere: hand requests that offer per-message deflate to aiohttp (which
            negotiates compression) instead of serving them uncompressed here.
        max_unsent_bytes: a session whose peer leaves more than this unread is dropped.
        head_timeout_seconds: a connection that has not sent its request head by then is dropped.
        connections: counts every connection per address (refusing those over the cap), whoever
            serves it; a guard with the default limits if None. Its idle timeout also bounds how
            long a connection kept after a long-polling answer waits for its next request.
        serve_polling: answer plain long-polling requests here (``polling.py``) instead of handing
            them to aiohttp.
    """

    def __init__(
        self,
        eio: internals.EngineIOServer,
        *,
        socketio_paths: Collection[str],
        admit: Callable[[str], bool],
        malformed_frames: MalformedFrameLog,
        metrics: GatewayMetrics,
        serve_deflate_elsewhere: bool = False,
        max_unsent_bytes: int = DEFAULT_MAX_UNSENT_BYTES,
        head_timeout_seconds: float = HEAD_TIMEOUT_SECONDS,
        connections: ConnectionGuard | None = None,
        serve_polling: bool = True,
    ) -> None:
        self.eio = eio
        self.socketio_paths = frozenset(socketio_paths)
        self.admit = admit
        self.malformed_frames = malformed_frames
        self.metrics = metrics
        self.serve_deflate_elsewhere = serve_deflate_elsewhere
        self.max_unsent_bytes = max_unsent_bytes
        self.head_timeout_seconds = head_timeout_seconds
        self.connections = connections or ConnectionGuard(ConnectionLimits())
        self.serve_polling = serve_polling
        if serve_polling:
            internals.install_plain_requests(eio)
        # The connections this listener serves itself between requests (not those handed on).
        self._connections: set[_Connection] = set()
        # Set at shutdown: every answer then closes its connection.
        self.closing = False
        # Lines a client can cause, per cause (a flood of peers that stop reading writes a few).
        self.log = RateLimitedLog(logger, interval_seconds=10.0, burst=10)
        metrics.rate_limited_logs["websocket_transport"] = self.log
        # aiohttp's lines about what clients sent it (malformed requests), for the requests handed over.
        self.http_log = RateLimitedLog(
            logging.getLogger("socket_gateway.http"), interval_seconds=10.0, burst=10
        )
        metrics.rate_limited_logs["http"] = self.http_log

    def note_dropped_for_unread(self, sid: str, remote: str | None) -> None:
        """Counts and logs a WebSocket session dropped because its peer left more than
        ``max_unsent_bytes`` unsent (the caller, which checked on its write path, aborts it)."""
        self.metrics.websockets_dropped_unread_total += 1
        self.metrics.sessions_dropped_unread["websocket"] += 1
        self.log.warning(
            "stopped_reading",
            "Viewer stopped reading; connection dropped",
            extra={"connection": sid, "remote": remote},
        )

    def runner_options(self) -> dict[str, Any]:
        """``web.AppRunner`` keyword arguments for the requests handed to aiohttp: the idle timeout, and
        a log where a malformed request is one rate-limited line without traceback (aiohttp's own wrote
        an ERROR with a traceback for each)."""
        return {**self.connections.runner_options(), "logger": HttpServerLog(self.http_log)}

    def protocol(self, http_protocol: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """A protocol for one accepted connection; what is not served here goes to ``http_protocol()``."""
        return _Connection(self, http_protocol)

    def polling_request(self, head: bytes, peer: tuple[str, int] | None) -> PollingRequest | None:
        """The plain long-polling request in this head, if it is to be answered here."""
        eio = self.eio
        if not self.serve_polling or "polling" not in eio.transports:
            return None
        return parse_polling_request(head, self.socketio_paths, eio.max_http_buffer_size, peer)

    def session_upgrade(self, head: bytes) -> UpgradeRequest | None:
        """A long-polling session's upgrade in this head, if it is to be served here (else aiohttp's)."""
        if not self.serve_polling or "websocket" not in self.eio.transports:
            return None
        request = parse_session_upgrade(head, self.socketio_paths)
        if request is None or (self.serve_deflate_elsewhere and request.offers_deflate()):
            return None
        return request

    def stop_keeping_alive(self) -> None:
        """At shutdown: closes connections idle between requests; each answer from now on closes its own."""
        self.closing = True
        for connection in list(self._connections):
            connection.close_if_idle()

    def accepts(self, request: UpgradeRequest, environ: dict[str, Any]) -> bool:
        """Whether this request is served here; a refusal is left to aiohttp, which explains it."""
        eio = self.eio
        if "websocket" not in eio.transports:
            return False
        if self.serve_deflate_elsewhere and request.offers_deflate():
            return False
        return not internals.origin_refused(eio, environ)


class _Connection(asyncio.Protocol):
    """An accepted connection while its request heads are read here: then a session, or aiohttp's.

    Long-polling requests are answered here one at a time, in the order they arrive; between them the
    connection waits for its next request head, as long as the idle timeout allows.
    """

    def __init__(self, endpoint: WebSocketEndpoint, http_protocol: Callable[[], asyncio.Protocol]) -> None:
        self._endpoint = endpoint
        self._http_protocol = http_protocol
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        # The peer's address while this protocol answers for the connection's place in the guard's
        # count; None once it is handed to a session or to aiohttp (they release it), or if refused.
        self._address: str | None = None
        # The long-polling request being answered; later bytes wait in the buffer meanwhile.
        self._answering: asyncio.Task[None] | None = None
        self._paused = False
        self._upgrade_key = ""
        # Set once an upgrade is accepted: the connection is a WebSocket's from then on.
        self._accepted: ListenerWebSocket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._address = self._endpoint.connections.admit(transport)
        if self._address is None:
            return  # over the per-address cap: answered and closing
        self._endpoint._connections.add(self)
        self._head_timer = asyncio.get_running_loop().call_later(
            self._endpoint.head_timeout_seconds, transport.abort
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._endpoint._connections.discard(self)
        if self._address is not None:
            self._endpoint.connections.release(self._address)
            self._address = None

    def close_if_idle(self) -> None:
        """Closes the connection unless a request is being answered (that answer closes it)."""
        if self._answering is None and self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return  # refused
        buffer = self._buffer
        buffer += data
        if self._answering is not None:
            # One request at a time (HTTP/1.1 pipelining): what comes meanwhile waits, bounded.
            if len(buffer) > MAX_HEAD_BYTES + self._endpoint.eio.max_http_buffer_size and not self._paused:
                self._paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            return
        self._read_request()

    def _read_request(self) -> None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD_BYTES:
            if end > MAX_HEAD_BYTES or len(buffer) > MAX_HEAD_BYTES:
                self._hand_over()  # aiohttp refuses a head this long
            return
        endpoint = self._endpoint
        head = bytes(buffer[:end])
        request = parse_new_session_upgrade(head, endpoint.socketio_paths)
        transport = self._transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        if request is None:
            polling = endpoint.polling_request(head, peer[:2] if peer else None)
            if polling is None:
                upgrade = endpoint.session_upgrade(head)
                if upgrade is not None and len(buffer) == end + 4:
                    self._answer_upgrade(environ_of(upgrade, peer[:2] if peer else None), upgrade.key)
                    return
            # A body still on its way is read by aiohttp, whose partial-request timeout bounds it.
            if polling is None or len(buffer) < end + 4 + polling.content_length:
                self._hand_over()
                return
            self._answer_polling(polling, end + 4)
            return
        environ = environ_of(request, peer[:2] if peer else None)
        if not endpoint.accepts(request, environ):
            self._hand_over()
            return
        if self._head_timer is not None:
            self._head_timer.cancel()
        if not endpoint.admit(environ["REMOTE_ADDR"] or "unknown"):
            transport.write(
                b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(_RATE_LIMITED_BODY), _RATE_LIMITED_BODY)
            )
            transport.close()
            return
        endpoint._connections.discard(self)
        session = WebSocketSession(endpoint, transport, request, environ, self._address)
        self._address = None
        transport.set_protocol(session)
        rest = bytes(buffer[end + 4 :])
        if rest:
            session.data_received(rest)

    def _answer_polling(self, request: PollingRequest, body_start: int) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        buffer = self._buffer
        body_end = body_start + request.content_length
        body = bytes(buffer[body_start:body_end])
        del buffer[:body_end]
        endpoint = self._endpoint
        environ = with_body(request, body)
        if request.handshake and not endpoint.admit(environ["REMOTE_ADDR"] or "unknown"):
            headers = [("Content-Type", "application/json; charset=utf-8")]
            headers += internals.cors_headers_of(endpoint.eio, environ)
            refusal = plain_response("429 Too Many Requests", headers, _RATE_LIMITED_BODY)
            self._respond(refusal, keep_alive=request.keep_alive)
            return
        self._answering = asyncio.get_running_loop().create_task(self._answer(environ, request.keep_alive))

    async def _answer(self, environ: dict[str, Any], keep_alive: bool) -> None:
        try:
            response = await internals.handle_plain_request(self._endpoint.eio, environ)
        except Exception:
            # A fault of the gateway's, not of the client's request: aiohttp answers such a one 500 too.
            self._endpoint.http_log.exception("polling_error", "Error handling a long-polling request")
            response, keep_alive = _INTERNAL_ERROR, False
        self._answering = None
        self._respond(response, keep_alive=keep_alive)

    def _answer_upgrade(self, environ: dict[str, Any], key: str) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._buffer.clear()
        self._upgrade_key = key
        environ[internals.PLAIN_REQUEST] = True
        environ[LISTENER_UPGRADE] = self
        self._answering = asyncio.get_running_loop().create_task(self._upgrade(environ))

    def accept_websocket(self) -> ListenerWebSocket:
        """Answers the upgrade 101; the connection is the returned WebSocket's from then on."""
        transport = self._transport
        assert transport is not None
        self._endpoint._connections.discard(self)
        websocket = self._accepted = ListenerWebSocket(self._endpoint, transport, self._address)
        self._address = None
        if transport.is_closing():
            # The client went away while python-engineio read its request: the WebSocket ends at once
            # (it would never be told of a connection already lost).
            websocket.connection_lost(None)
            return websocket
        transport.set_protocol(websocket)
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_header(self._upgrade_key) + b"\r\n\r\n"
        )
        return websocket

    async def _upgrade(self, environ: dict[str, Any]) -> None:
        try:
            # Runs the upgraded WebSocket to its end when python-engineio accepts the upgrade (then
            # None: the connection was the WebSocket's); its refusal otherwise.
            response = await internals.handle_plain_upgrade(self._endpoint.eio, environ)
        except Exception:
            self._endpoint.http_log.exception("upgrade_error", "Error handling a WebSocket upgrade")
            response = _INTERNAL_ERROR
        self._answering = None
        if self._accepted is not None:
            self._accepted.close()  # after the WebSocket's end (or a fault of the gateway's during it)
        elif response is not None:
            self._respond(response, keep_alive=False)

    def _respond(self, response: internals.PlainResponse, *, keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            return  # the client went away while its request was answered
        keep_alive = keep_alive and not self._endpoint.closing
        transport.write(encode_response(response, keep_alive=keep_alive))
        if not keep_alive:
            transport.close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._head_timer = asyncio.get_running_loop().call_later(
            self._endpoint.connections.limits.idle_timeout_seconds, transport.close
        )
        if self._buffer:
            self._read_request()

    def _hand_over(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        transport = self._transport
        assert transport is not None
        assert self._address is not None
        self._endpoint._connections.discard(self)
        http = self._endpoint.connections.track(self._http_protocol(), self._address)
        self._address = None
        transport.set_protocol(http)
        http.connection_made(transport)
        if self._buffer:
            http.data_received(bytes(self._buffer))
