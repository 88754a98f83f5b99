"""Long-polling requests read and answered on the gateway's own listener, python-engineio serving them.

socket.io-client's default transports start every viewer on HTTP long-polling: a handshake GET, the
CONNECT POST, and GETs until the upgrade to WebSocket (about four requests, often each on its own
TCP connection). Handed to aiohttp, each request paid for its request handler and task, its parser,
the middleware chain, a ``web.Request`` and a ``web.Response``, around python-engineio's own
``handle_request``; the gateway then spent about 1.2x Node socket.io's CPU per such viewer
(docs/benchmarks.md). Here the listener (``handover.py``), which reads every request head anyway,
answers the plain ones itself: the head it parsed becomes the WSGI environ python-engineio's aiohttp
driver would have built, ``handle_request`` answers it (``library_internals.install_plain_requests``),
and the answer is written straight into the connection, which stays open for the next request.

Only what is plainly a long-polling request of Engine.IO 4 is read here (GET, POST or OPTIONS on a
Socket.IO path, ``transport=polling``, HTTP/1.1, no JSONP, no ``Upgrade``, no chunked body, a POST's
whole body already arrived and within ``max_http_buffer_size``); anything else still goes to aiohttp
with every byte read so far, exactly as before. The sessions are python-engineio's, so the bounds of
``session_guard.py`` hold as they did: the bounded queue, the checked POST payload, the connect
deadline, python-engineio's heartbeats.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from socket_gateway.transport import library_internals as internals

# A header name: an HTTP token (RFC 9110); anything else is left to aiohttp, which refuses it.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than tab are not allowed in a header value.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_METHODS = frozenset({"GET", "POST", "OPTIONS"})


@dataclass(frozen=True)
class PollingRequest:
    """A long-polling request of Engine.IO 4, as read from its head (``wsgi``: its WSGI environ)."""

    method: str
    content_length: int
    keep_alive: bool
    # A request that opens a new session (a GET without ``sid``), which the per-address limit counts.
    handshake: bool
    wsgi: dict[str, Any]


class _Body:
    """A request body that has arrived whole, read as python-engineio's aiohttp driver reads one."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def readexactly(self, length: int) -> bytes:
        data, self._data = self._data[:length], self._data[length:]
        return data

    async def read(self, length: int = -1) -> bytes:
        if length < 0:
            length = len(self._data)
        return await self.readexactly(length)


def request_environ(method: str, target: str, peer: tuple[str, int] | None) -> dict[str, Any]:
    """The WSGI environ python-engineio's aiohttp driver builds for a request, before its headers."""
    path, _, query = target.partition("?")
    host, port = peer if peer else ("", 0)
    return {
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "RAW_URI": target,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "socket_gateway",
        "SERVER_PORT": "0",
        "REMOTE_ADDR": host,
        "REMOTE_PORT": str(port),
    }


def parse_polling_request(
    head: bytes, socketio_paths: Collection[str], max_body_bytes: int, peer: tuple[str, int] | None
) -> PollingRequest | None:
    """The long-polling request in a request head (without its blank line), or None for anything else.

    None means "not read here": the request may still be valid HTTP, for aiohttp to serve.

    Args:
        head: the request line and headers.
        socketio_paths: the Engine.IO paths, with their slashes.
        max_body_bytes: a POST with a longer body is left to aiohttp (python-engineio refuses it there).
        peer: the connection's peer address.
    """
    lines = head.decode("latin-1").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or request_line[2] != "HTTP/1.1":
        return None
    method, target = request_line[0], request_line[1]
    if method not in _METHODS:
        return None
    path, _, query = target.partition("?")
    if path not in socketio_paths:
        return None
    params = parse_qs(query, keep_blank_values=True)
    if params.get("transport") != ["polling"] or "j" in params:
        return None
    environ = request_environ(method, target, peer)
    environ[internals.PLAIN_REQUEST] = True
    content_length = 0
    keep_alive = True
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            return None  # folded or malformed: aiohttp answers such requests
        value = value.strip(" \t")
        if _BAD_VALUE.search(value):
            return None
        name = name.upper()
        if name in ("TRANSFER-ENCODING", "UPGRADE", "EXPECT"):
            return None
        if name == "CONTENT-LENGTH":
            if "CONTENT_LENGTH" in environ or not value.isdigit() or not value.isascii():
                return None
            content_length = int(value)
            environ["CONTENT_LENGTH"] = value
            continue
        if name == "CONTENT-TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name == "CONNECTION" and "close" in (token.strip().lower() for token in value.split(",")):
            keep_alive = False
        key = "HTTP_" + name.replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if content_length and method != "POST":
        return None
    if method == "POST" and ("CONTENT_LENGTH" not in environ or content_length > max_body_bytes):
        return None
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    handshake = method == "GET" and "sid" not in params
    return PollingRequest(method, content_length, keep_alive, handshake, environ)


def with_body(request: PollingRequest, body: bytes) -> dict[str, Any]:
    """The request's environ with its body (all of it, already read) as ``wsgi.input``."""
    environ = request.wsgi
    environ["wsgi.input"] = _Body(body)
    return environ


def encode_response(response: internals.PlainResponse, *, keep_alive: bool) -> bytes:
    """The HTTP/1.1 response for python-engineio's answer: status, its headers, the length, the body."""
    lines = [f"HTTP/1.1 {response.status}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


def plain_response(status: str, headers: list[tuple[str, str]], body: bytes) -> internals.PlainResponse:
    """An answer of the gateway's own (a refusal) in the form python-engineio's answers take here."""
    return internals.PlainResponse(status, headers, body)
