"""Engine.IO sessions that open directly on a WebSocket, served on a plain asyncio Protocol.

Viewers connect with ``transports: ["websocket"]`` (the dashboard does): one HTTP upgrade, then
frames. Through aiohttp and python-engineio, every such connection cost about 2.2 ms of CPU from
connect to close (docs/benchmarks.md, "Connect cost"): aiohttp's request handler task, parser,
middleware and WebSocket reader and writer; then Engine.IO's writer task and queue, a task and an
``asyncio.wait_for`` per received packet, and a ping task that outlives the socket by 25 s. One
gateway process could not take 500 viewers arriving and leaving per second.

Here the listening socket's protocol reads the request head itself. A new Engine.IO 4 session
asking for the WebSocket transport is served on the same protocol object from then on:

- the handshake is answered with the 101 and Engine.IO's OPEN packet in one write;
- frames are parsed in ``data_received``; the packets of one connection are handled in order by
  at most one task at a time, started when packets arrive and ended when they are handled;
- everything sent is framed and written straight into the transport: nothing is queued per
  socket, so nothing sent can overtake anything sent earlier;
- pings run on one timer handle per session, cancelled when the session ends.

Anything else — polling, an upgrade of a polling session, a WebSocket with per-message deflate
when compression is configured, probes, metrics, any request this does not recognise — is handed,
with the bytes read so far, to aiohttp's own protocol, which serves it as before.

The session is a python-engineio ``AsyncSocket`` in the Engine.IO server's socket table, so
python-socketio (emits, rooms, disconnects, shutdown) cannot tell the two kinds apart. What of
python-engineio's internals that relies on is named in ``library_internals``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from service_common.connection_guard import ConnectionGuard, ConnectionLimits
from service_common.http_server_log import HttpServerLog
from service_common.log_limits import RateLimitedLog
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.malformed_frames import MalformedFrameLog, engineio_frame_problem

logger = logging.getLogger(__name__)

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# aiohttp's own limit for a request line plus headers.
MAX_HEAD_BYTES = 8190
# A peer that sends no complete request head in this time is dropped (aiohttp keeps such a
# connection until its keep-alive timeout, 75 s).
HEAD_TIMEOUT_SECONDS = 10.0
# Count updates are ~90 bytes, coalesced per room: a megabyte unsent means the peer stopped
# reading minutes ago. Its connection is dropped instead of growing without bound.
DEFAULT_MAX_UNSENT_BYTES = 1024 * 1024
# Frames one message may be split into. Browsers send each message in one frame; a peer that sent
# one non-final frame and then empty continuations without end grew the gateway 73 -> 611 MiB (a
# list entry per frame, none of them counted in the message's size). Such a peer is closed with 1009.
MAX_FRAMES_PER_MESSAGE = 128

_OP_CONTINUATION, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA
_CLOSE_NORMAL, _CLOSE_PROTOCOL_ERROR, _CLOSE_INVALID_DATA, _CLOSE_TOO_BIG = 1000, 1002, 1007, 1009


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
    if "sid" in params or "j" in params:
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
    return UpgradeRequest(target, path, query, key, headers)


def environ_of(request: UpgradeRequest, peer: tuple[str, int] | None) -> dict[str, Any]:
    """The WSGI-style environ python-engineio's aiohttp driver builds, from this request."""
    host, port = peer if peer else ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": request.query,
        "RAW_URI": request.target,
        "PATH_INFO": request.path,
        "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "socket_gateway",
        "SERVER_PORT": "0",
        "REMOTE_ADDR": host,
        "REMOTE_PORT": str(port),
        "wsgi.url_scheme": request.headers.get("x-forwarded-proto", "http"),
    }
    for name, value in request.headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _server_frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def websocket_text_frame(text: str) -> bytes:
    """An unmasked, uncompressed, final text frame, as a server sends it."""
    return _server_frame(_OP_TEXT, text.encode("utf-8"))


def _close_frame(code: int) -> bytes:
    return _server_frame(_OP_CLOSE, struct.pack("!H", code))


def _unmask(mask: bytes, payload: bytes) -> bytes:
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


class _ProtocolError(Exception):
    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


@dataclass(frozen=True)
class _Close:
    """A request, in a session's inbox, to end the session once what came before is handled."""

    reason: str
    abort: bool


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
            serves it; a guard with the default limits if None.
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
        # Lines a client can cause, per cause (a flood of peers that stop reading writes a few).
        self.log = RateLimitedLog(logger, interval_seconds=10.0, burst=10)
        metrics.rate_limited_logs["websocket_transport"] = self.log
        # aiohttp's lines about what clients sent it (malformed requests), for the requests handed over.
        self.http_log = RateLimitedLog(
            logging.getLogger("socket_gateway.http"), interval_seconds=10.0, burst=10
        )
        metrics.rate_limited_logs["http"] = self.http_log

    def runner_options(self) -> dict[str, Any]:
        """``web.AppRunner`` keyword arguments for the requests handed to aiohttp: the idle timeout, and
        a log where a malformed request is one rate-limited line without traceback (aiohttp's own wrote
        an ERROR with a traceback for each)."""
        return {**self.connections.runner_options(), "logger": HttpServerLog(self.http_log)}

    def protocol(self, http_protocol: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """A protocol for one accepted connection; what is not served here goes to ``http_protocol()``."""
        return _Connection(self, http_protocol)

    def accepts(self, request: UpgradeRequest, environ: dict[str, Any]) -> bool:
        """Whether this request is served here; a refusal is left to aiohttp, which explains it."""
        eio = self.eio
        if "websocket" not in eio.transports:
            return False
        if self.serve_deflate_elsewhere and request.offers_deflate():
            return False
        return not internals.origin_refused(eio, environ)


class _Connection(asyncio.Protocol):
    """An accepted connection until its request head is read: then a session, or aiohttp's."""

    def __init__(self, endpoint: WebSocketEndpoint, http_protocol: Callable[[], asyncio.Protocol]) -> None:
        self._endpoint = endpoint
        self._http_protocol = http_protocol
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        # The peer's address while this protocol answers for the connection's place in the guard's
        # count; None once it is handed to a session or to aiohttp (they release it), or if refused.
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._address = self._endpoint.connections.admit(transport)
        if self._address is None:
            return  # over the per-address cap: answered and closing
        self._head_timer = asyncio.get_running_loop().call_later(
            self._endpoint.head_timeout_seconds, transport.abort
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if self._address is not None:
            self._endpoint.connections.release(self._address)
            self._address = None

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return  # refused
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD_BYTES:
            if end > MAX_HEAD_BYTES or len(buffer) > MAX_HEAD_BYTES:
                self._hand_over()  # aiohttp refuses a head this long
            return
        endpoint = self._endpoint
        request = parse_new_session_upgrade(bytes(buffer[:end]), endpoint.socketio_paths)
        transport = self._transport
        assert transport is not None
        if request is None:
            self._hand_over()
            return
        peer = transport.get_extra_info("peername")
        environ = environ_of(request, peer[:2] if peer else None)
        if not endpoint.accepts(request, environ):
            self._hand_over()
            return
        if self._head_timer is not None:
            self._head_timer.cancel()
        if not endpoint.admit(environ["REMOTE_ADDR"] or "unknown"):
            body = b'{"error": "too many connections; retry later"}'
            transport.write(
                b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            transport.close()
            return
        session = WebSocketSession(endpoint, transport, request, environ, self._address)
        self._address = None
        transport.set_protocol(session)
        rest = bytes(buffer[end + 4 :])
        if rest:
            session.data_received(rest)

    def _hand_over(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        transport = self._transport
        assert transport is not None
        assert self._address is not None
        http = self._endpoint.connections.track(self._http_protocol(), self._address)
        self._address = None
        transport.set_protocol(http)
        http.connection_made(transport)
        if self._buffer:
            http.data_received(bytes(self._buffer))


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
        # The message being reassembled from its frames, and how many frames it has had.
        self._fragments = bytearray()
        self._fragments_opcode = 0
        self._fragments_frames = 0
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
            self.write_frame(_server_frame(_OP_BINARY, encoded))

    def write_frame(self, frame: bytes) -> None:
        """Writes one ready server frame, unless the session has ended or its peer stopped reading."""
        transport = self.transport
        # Before the 101 is out nothing may be written (only a stop can try: it closes the session).
        if self.closed or not self.connected or transport.is_closing():
            return
        transport.write(frame)
        if transport.get_write_buffer_size() > self._endpoint.max_unsent_bytes:
            endpoint = self._endpoint
            endpoint.metrics.websockets_dropped_unread_total += 1
            endpoint.metrics.sessions_dropped_unread["websocket"] += 1
            endpoint.log.warning(
                "stopped_reading",
                "Viewer stopped reading; connection dropped",
                extra={"connection": self.sid, "remote": self.environ["REMOTE_ADDR"]},
            )
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
            self._close_transport(_CLOSE_NORMAL)

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            offset = self._read_frames(buffer)
        except _ProtocolError as error:
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

    # Frames (RFC 6455 §5)

    def _read_frames(self, buffer: bytearray) -> int:
        """Handles each complete frame in ``buffer``; returns how many bytes were consumed."""
        max_message = self.server.max_http_buffer_size
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            if first & 0x70:
                raise _ProtocolError(_CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise _ProtocolError(_CLOSE_PROTOCOL_ERROR, "client frame not masked")
            opcode = first & 0x0F
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if opcode >= _OP_CLOSE:
                if length > 125 or not first & 0x80:
                    raise _ProtocolError(_CLOSE_PROTOCOL_ERROR, "bad control frame")
            elif len(self._fragments) + length > max_message:
                raise _ProtocolError(_CLOSE_TOO_BIG, "message too big")
            if size - start < 4 + length:
                break
            mask = bytes(buffer[start : start + 4])
            payload = _unmask(mask, bytes(buffer[start + 4 : start + 4 + length]))
            offset = start + 4 + length
            self._frame(opcode, bool(first & 0x80), payload)
            if self.transport.is_closing():
                break
        return offset

    def _frame(self, opcode: int, final: bool, payload: bytes) -> None:
        if opcode == _OP_PING:
            self.write_frame(_server_frame(_OP_PONG, payload))
            return
        if opcode == _OP_PONG:
            return
        if opcode == _OP_CLOSE:
            # Answered with the peer's own code (1000 if it gave none), then the connection closes.
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else _CLOSE_NORMAL
            self._close_transport(code if 1000 <= code < 5000 else _CLOSE_PROTOCOL_ERROR)
            self._enqueue(_Close(self.server.reason.TRANSPORT_CLOSE, abort=True))
            return
        if opcode == _OP_CONTINUATION:
            if not self._fragments_opcode:
                raise _ProtocolError(_CLOSE_PROTOCOL_ERROR, "continuation without a message")
        elif opcode in (_OP_TEXT, _OP_BINARY):
            if self._fragments_opcode:
                raise _ProtocolError(_CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            if final:
                self._message(opcode, payload)
                return
            self._fragments_opcode = opcode
        else:
            raise _ProtocolError(_CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        self._fragments_frames += 1
        if self._fragments_frames > MAX_FRAMES_PER_MESSAGE:
            raise _ProtocolError(_CLOSE_TOO_BIG, "message in too many frames")
        self._fragments += payload
        if final:
            message = bytes(self._fragments)
            message_opcode = self._fragments_opcode
            self._fragments.clear()
            self._fragments_opcode = self._fragments_frames = 0
            self._message(message_opcode, message)

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_TEXT:
            try:
                self._enqueue(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise _ProtocolError(_CLOSE_INVALID_DATA, "text frame not UTF-8") from None
        else:
            self._enqueue(payload)

    def _close_transport(self, code: int) -> None:
        transport = self.transport
        if not transport.is_closing():
            if self.connected:  # a close frame only once the 101 is out
                transport.write(_close_frame(code))
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
        accept = base64.b64encode(hashlib.sha1(self._request.key.encode() + _ACCEPT_GUID).digest())
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
            self._close_transport(_CLOSE_PROTOCOL_ERROR)
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
