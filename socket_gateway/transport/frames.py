"""The WebSocket frame codec (RFC 6455 §5) of the gateway's own WebSocket sessions: no I/O, no Engine.IO.

Also the opening handshake's accept key (§4.2.2), which every WebSocket the gateway answers sends.

Server frames are built whole (unmasked, final, uncompressed). Client frames are read from a
connection's buffer by :class:`FrameReader`: masking required, reserved bits refused, fragments
reassembled into one buffer, a message over its size limit or split into more than
``MAX_FRAMES_PER_MESSAGE`` frames refused, text checked to be UTF-8. What a frame means is the
session's: the reader hands each complete message, ping and close to a :class:`FrameSink`.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Protocol

# Frames one message may be split into. Browsers send each message in one frame; a peer that sent
# one non-final frame and then empty continuations without end grew the gateway 73 -> 611 MiB (a
# list entry per frame, none of them counted in the message's size). Such a peer is closed with 1009.
MAX_FRAMES_PER_MESSAGE = 128

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_header(key: str) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest())


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame, as a server sends it."""
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
    return server_frame(OP_TEXT, text.encode("utf-8"))


def close_frame(code: int) -> bytes:
    """A close frame with its status code."""
    return server_frame(OP_CLOSE, struct.pack("!H", code))


def _unmask(mask: bytes, payload: bytes) -> bytes:
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


class ProtocolError(Exception):
    """The peer broke RFC 6455; the connection is closed with ``close_code``."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


class FrameSink(Protocol):
    """What a connection does with what its peer sent."""

    def message(self, data: str | bytes) -> None:
        """A complete text (decoded) or binary message."""

    def ping(self, payload: bytes) -> None:
        """A ping, to be answered with a pong carrying ``payload``."""

    def peer_closed(self, code: int) -> None:
        """A close frame with the peer's code (1000 if it gave none; 1002 for a code out of range)."""

    def stopped(self) -> bool:
        """Whether the connection is closing: the frames after this one are not read."""


class FrameReader:
    """Reads one connection's client frames; holds the message being reassembled.

    Args:
        sink: where messages, pings and closes go.
        max_message_bytes: the largest message accepted (1009 past it).
    """

    def __init__(self, sink: FrameSink, max_message_bytes: int) -> None:
        self._sink = sink
        self._max_message = max_message_bytes
        # The message being reassembled from its frames, and how many frames it has had.
        self._fragments = bytearray()
        self._fragments_opcode = 0
        self._fragments_frames = 0

    def read(self, buffer: bytearray) -> int:
        """Handles each complete frame in ``buffer``; returns how many bytes were consumed.

        Raises:
            ProtocolError: the peer broke the protocol (the buffer is then of no further use).
        """
        max_message = self._max_message
        sink = self._sink
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            if first & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frame not masked")
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
            if opcode >= OP_CLOSE:
                if length > 125 or not first & 0x80:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad control frame")
            elif len(self._fragments) + length > max_message:
                raise ProtocolError(CLOSE_TOO_BIG, "message too big")
            if size - start < 4 + length:
                break
            mask = bytes(buffer[start : start + 4])
            payload = _unmask(mask, bytes(buffer[start + 4 : start + 4 + length]))
            offset = start + 4 + length
            self._frame(opcode, bool(first & 0x80), payload)
            if sink.stopped():
                break
        return offset

    def _frame(self, opcode: int, final: bool, payload: bytes) -> None:
        if opcode == OP_PING:
            self._sink.ping(payload)
            return
        if opcode == OP_PONG:
            return
        if opcode == OP_CLOSE:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else CLOSE_NORMAL
            self._sink.peer_closed(code if 1000 <= code < 5000 else CLOSE_PROTOCOL_ERROR)
            return
        if opcode == OP_CONTINUATION:
            if not self._fragments_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragments_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            if final:
                self._message(opcode, payload)
                return
            self._fragments_opcode = opcode
        else:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        self._fragments_frames += 1
        if self._fragments_frames > MAX_FRAMES_PER_MESSAGE:
            raise ProtocolError(CLOSE_TOO_BIG, "message in too many frames")
        self._fragments += payload
        if final:
            message = bytes(self._fragments)
            message_opcode = self._fragments_opcode
            self._fragments.clear()
            self._fragments_opcode = self._fragments_frames = 0
            self._message(message_opcode, message)

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text frame not UTF-8") from None
            self._sink.message(text)
        else:
            self._sink.message(payload)
