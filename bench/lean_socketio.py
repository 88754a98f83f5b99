"""A lean Socket.IO v4 load client: WebSocket frames parsed by hand on a plain asyncio Protocol.

The benchmarks open thousands of sockets a second from one core and receive hundreds of thousands
of count updates. aiohttp's client spends a millisecond or more per WebSocket handshake and a task
per reader; at those rates the load client, not the server under test, set the pace (a 5,000-socket
"10-second" join storm took 51 s while the gateway used a quarter of its core). This client writes
the upgrade request itself, reads frames in ``data_received`` and never starts a task per socket.

Enough of the protocols for a benchmark and no more: text frames only, no extensions, server frames
unfragmented (aiohttp's server does not fragment), client frames masked with a zero key (legal:
RFC 6455 §5.3 asks for an unpredictable key to protect proxies, and there are none on loopback).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

UPDATE_PREFIX = b'42["viewerCountUpdate"'
_ZERO_MASK = b"\x00\x00\x00\x00"
_OPCODE_TEXT, _OPCODE_CLOSE, _OPCODE_PING, _OPCODE_PONG = 0x1, 0x8, 0x9, 0xA


def _client_frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + _ZERO_MASK + payload


class LeanSocket(asyncio.Protocol):
    """One Socket.IO connection on the default namespace: connect with auth, emit, ack, count updates."""

    def __init__(
        self, request: bytes, auth: dict[str, Any] | None, on_update: Callable[[bytes], None] | None
    ):
        self._request = request
        self._connect_packet = ("40" + (json.dumps(auth) if auth else "")).encode()
        self._on_update = on_update
        self._buffer = bytearray()
        self._upgraded = False
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._acks: dict[int, asyncio.Future[bytes]] = {}
        self._next_ack = 0

    @classmethod
    async def open(
        cls,
        url: str,
        auth: dict[str, Any] | None = None,
        on_update: Callable[[bytes], None] | None = None,
        wait_seconds: float = 30.0,
    ) -> LeanSocket:
        """A connected socket (its Socket.IO CONNECT received); ``on_update`` gets each update's frame."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        request = (
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        _, socket = await loop.create_connection(lambda: cls(request, auth, on_update), host, port)
        try:
            await asyncio.wait_for(asyncio.shield(socket.connected), wait_seconds)
        except BaseException:
            socket.abort()
            raise
        return socket

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or ConnectionError("connection closed")
        if not self.connected.done():
            self.connected.set_exception(error)
        for future in self._acks.values():
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail(ConnectionError(bytes(buffer[: buffer.find(b"\r\n")]).decode(errors="replace")))
                return
            del buffer[: end + 4]
            self._upgraded = True
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if size < start + length:
                break
            self._frame(first & 0x0F, bytes(buffer[start : start + length]))
            offset = start + length
        del buffer[:offset]

    # Engine.IO / Socket.IO

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == _OPCODE_TEXT:
            if payload.startswith(UPDATE_PREFIX):
                if self._on_update is not None:
                    self._on_update(payload)
            elif payload == b"2":
                self._send(b"3")
            elif payload.startswith(b"43"):
                ack_id = int(payload[2 : payload.index(b"[")])
                future = self._acks.pop(ack_id, None)
                if future is not None and not future.done():
                    future.set_result(payload)
            elif payload.startswith(b"0{"):
                self._send(self._connect_packet)
            elif payload.startswith(b"40"):
                if not self.connected.done():
                    self.connected.set_result(None)
            elif payload.startswith(b"44"):
                self._fail(ConnectionError(payload.decode(errors="replace")))
        elif opcode == _OPCODE_PING:
            self._write(_client_frame(_OPCODE_PONG, payload))
        elif opcode == _OPCODE_CLOSE:
            self.abort()

    def _send(self, text: bytes) -> None:
        self._write(_client_frame(_OPCODE_TEXT, text))

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail(self, error: Exception) -> None:
        if not self.connected.done():
            self.connected.set_exception(error)
        self.abort()

    def emit(self, event: str, payload: object = None) -> None:
        frame = [event] if payload is None else [event, payload]
        self._send(b"42" + json.dumps(frame).encode())

    async def call(self, event: str, payload: object = None, wait_seconds: float = 30.0) -> bytes:
        """Emits ``event`` asking for an acknowledgement; returns the acknowledgement frame."""
        ack_id = self._next_ack
        self._next_ack += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        frame = [event] if payload is None else [event, payload]
        self._send(f"42{ack_id}".encode() + json.dumps(frame).encode())
        return await asyncio.wait_for(future, wait_seconds)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        """A clean close: WebSocket close frame (1000), then the TCP connection."""
        self._write(_client_frame(_OPCODE_CLOSE, struct.pack("!H", 1000)))
        if self._transport is not None:
            self._transport.close()
        await self.closed
