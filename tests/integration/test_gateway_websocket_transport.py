"""Sessions opened directly on a WebSocket (socket_gateway/transport/websocket.py), against the real gateway.

The gateway runs as ``python -m socket_gateway`` serves it (``GatewaySite`` on a free loopback
port). The client here is a raw TCP socket that writes the upgrade request and every frame byte
by byte as the test says, so frames a browser would never send (unmasked, fragmented, oversized,
invalid UTF-8) can be sent, and every frame the server writes is seen in order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import engineio  # type: ignore[import-untyped]
import pytest

from socket_gateway.live.rooms import RoomCounts
from tests.gateway_support import ALLOWED_ORIGIN, WAIT, gateway_config, running_gateway, wait_until

KEY = base64.b64encode(b"0123456789abcdef").decode()
MASK = b"\x11\x22\x33\x44"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def client_frame(
    opcode: int, payload: bytes, *, final: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    first = (0x80 if final else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    return header + MASK + bytes(byte ^ MASK[i % 4] for i, byte in enumerate(payload))


def upgrade_request(port: int, path: str = "/socket.io/?EIO=4&transport=websocket", **headers: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {ALLOWED_ORIGIN}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawClient:
    """One TCP connection speaking WebSocket by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, request: bytes | None = None) -> tuple[RawClient, bytes]:
        """A connection that wrote ``request`` (the upgrade by default); returns it and the response head."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request if request is not None else upgrade_request(port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        return cls(reader, writer), head

    @classmethod
    async def open_session(cls, port: int, auth: dict[str, Any] | None = None) -> tuple[RawClient, str]:
        """A Socket.IO connection on the default namespace; returns it and its Socket.IO sid."""
        client, head = await cls.connect(port)
        assert head.startswith(b"HTTP/1.1 101 ")
        opening = await client.text()
        assert opening.startswith("0{")
        client.send_text("40" + (json.dumps(auth) if auth is not None else ""))
        connected = await client.text_starting("40")
        return client, json.loads(connected[2:])["sid"]

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    def send_text(self, text: str) -> None:
        self.send(client_frame(TEXT, text.encode()))

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload). Server frames are never masked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), WAIT)
        assert not second & 0x80, "a server frame must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), WAIT)

    async def text(self) -> str:
        opcode, payload = await self.frame()
        assert opcode == TEXT, (opcode, payload)
        return payload.decode()

    async def text_starting(self, prefix: str) -> str:
        """The next text frame starting with ``prefix``, answering Engine.IO pings on the way."""
        while True:
            text = await self.text()
            if text == "2":
                self.send_text("3")
            elif text.startswith(prefix):
                return text

    async def close_code(self) -> int:
        """Reads until the server's close frame; its status code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == CLOSE:
                return int(struct.unpack("!H", payload[:2])[0])

    async def closed_by_server(self) -> None:
        """Returns when the server has closed the TCP connection (and closes this end)."""
        while await asyncio.wait_for(self.reader.read(65536), WAIT):
            pass
        self.close()

    def close(self) -> None:
        self.writer.close()


async def test_a_direct_session_connects_joins_and_hears_counts_in_order(tmp_path: Path) -> None:
    """Proves the handshake (101 with the right accept key and Engine.IO's OPEN in it), CONNECT before
    any count, an acknowledgement and count updates on one session, and the room emptied on close."""
    async with running_gateway(gateway_config(tmp_path)) as running:
        client, head = await RawClient.connect(running.port)
        expected_accept = base64.b64encode(
            hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: " + expected_accept + b"\r\n" in head
        opening = json.loads((await client.text())[1:])
        assert opening["upgrades"] == []
        assert (opening["pingInterval"], opening["pingTimeout"]) == (25_000, 20_000)
        client.send_text('40{"auctionId": "direct"}')
        assert (await client.text()).startswith("40{")
        assert json.loads((await client.text_starting('42["viewerCountUpdate"'))[2:])[1]["viewerCount"] == 1
        client.send_text('421["leaveAuction"]')
        assert json.loads((await client.text_starting("431"))[3:]) == [{"ok": True, "auctionId": "direct"}]
        assert running.gateway.registry.counts("direct") == RoomCounts(0, 0)
        client.send_text('422["joinAuction",{"auctionId":"direct"}]')
        assert json.loads((await client.text_starting("432"))[3:])[0]["ok"] is True
        assert running.gateway.registry.counts("direct").viewer_count == 1
        client.send(client_frame(CLOSE, struct.pack("!H", 1000)))
        assert await client.close_code() == 1000
        await client.closed_by_server()
        await wait_until(
            lambda: running.gateway.registry.counts("direct").viewer_count == 0, "room not emptied"
        )
        assert not running.gateway.sio.eio.sockets


async def test_a_request_head_in_pieces_and_fragmented_messages_are_put_together(tmp_path: Path) -> None:
    """Proves the transport reassembles what TCP and WebSocket may split: a head written a few bytes at
    a time, and an event sent as three fragments with a ping between them (answered at once)."""
    async with running_gateway(gateway_config(tmp_path)) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        request = upgrade_request(running.port)
        for start in range(0, len(request), 7):
            writer.write(request[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0)
        client = RawClient(reader, writer)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).startswith(b"HTTP/1.1 101 ")
        assert (await client.text()).startswith("0{")
        client.send_text("40")
        await client.text_starting("40")
        message = b'427["joinAuction",{"auctionId":"pieces"}]'
        client.send(client_frame(TEXT, message[:5], final=False))
        client.send(client_frame(PING, b"still there?"))
        client.send(client_frame(CONTINUATION, message[5:20], final=False))
        client.send(client_frame(CONTINUATION, message[20:]))
        assert await client.frame() == (PONG, b"still there?")
        (ack,) = json.loads((await client.text_starting("437"))[3:])
        assert (ack["ok"], ack["auctionId"]) == (True, "pieces")
        client.close()


@pytest.mark.parametrize(
    ("frame", "close_code"),
    [
        pytest.param(client_frame(TEXT, b"40", masked=False), 1002, id="unmasked"),
        pytest.param(client_frame(TEXT, b"40", rsv=0x40), 1002, id="reserved-bit"),
        pytest.param(client_frame(0x3, b"40"), 1002, id="unknown-opcode"),
        pytest.param(client_frame(CONTINUATION, b"40"), 1002, id="continuation-first"),
        pytest.param(client_frame(PING, b"x" * 126), 1002, id="long-control-frame"),
        pytest.param(client_frame(TEXT, b"4\xff\xfe"), 1007, id="invalid-utf8"),
        pytest.param(client_frame(TEXT, b"4" + b"x" * 2_000), 1009, id="too-big"),
        pytest.param(
            client_frame(TEXT, b"4" + b"x" * 900, final=False) + client_frame(CONTINUATION, b"x" * 900),
            1009,
            id="too-big-in-fragments",
        ),
        pytest.param(
            client_frame(TEXT, b"4", final=False) + client_frame(CONTINUATION, b"", final=False) * 200,
            1009,
            id="too-many-fragments",
        ),
        pytest.param(client_frame(TEXT, b"9"), 1002, id="unknown-engineio-packet"),
        pytest.param(client_frame(TEXT, b""), 1002, id="empty-engineio-packet"),
    ],
)
async def test_a_broken_frame_closes_only_its_own_connection_and_its_seat(
    tmp_path: Path, frame: bytes, close_code: int
) -> None:
    """Proves RFC 6455's rules and the Engine.IO packet check on this transport: the offending
    connection gets a close frame with the right code and leaves its room at once; a neighbour in
    the same room stays and hears the count drop."""
    async with running_gateway(gateway_config(tmp_path, max_payload_bytes=1_000)) as running:
        neighbour, _ = await RawClient.open_session(running.port, {"auctionId": "broken"})
        offender, _ = await RawClient.open_session(running.port, {"auctionId": "broken"})
        assert running.gateway.registry.counts("broken").viewer_count == 2
        offender.send(frame)
        assert await offender.close_code() == close_code
        await offender.closed_by_server()
        while True:
            update = json.loads((await neighbour.text_starting('42["viewerCountUpdate"'))[2:])[1]
            if update["viewerCount"] == 1:
                break
        assert len(running.gateway.sio.eio.sockets) == 1
        neighbour.close()
        offender.close()


async def test_a_peer_that_stops_reading_is_kept_to_the_unsent_cap_then_dropped(tmp_path: Path) -> None:
    """Proves slow-peer isolation on this transport: a peer that stops reading holds up nobody, gets
    every packet in order when it reads again, and is dropped (leaving its room, counted in
    /metrics) once it leaves more than the cap unread."""
    async with running_gateway(gateway_config(tmp_path)) as running, aiohttp.ClientSession() as http:
        fast, _ = await RawClient.open_session(running.port, {"auctionId": "slow"})
        slow, slow_sid = await RawClient.open_session(running.port, {"auctionId": "slow"})
        eio = running.gateway.sio.eio
        fanout = running.gateway.fanout
        slow_eio_sid = running.gateway.sio.manager.eio_sid_from_sid(slow_sid, "/")
        fast_eio_sid = next(sid for sid in eio.sockets if sid != slow_eio_sid)
        session = eio.sockets[slow_eio_sid]
        slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
        filler = "x" * 16_000

        def packet(sequence: int) -> Any:
            return engineio.packet.Packet(engineio.packet.MESSAGE, f'2["probe",{sequence},"{filler}"]')

        async def next_probe(client: RawClient) -> int:
            return int(json.loads((await client.text_starting('42["probe"'))[2:])[1])

        sequence = 0
        # Until the kernel's buffers are full and the gateway holds bytes for the slow peer, then 20 more.
        extra = 20
        while extra:
            assert sequence < 5_000, "the slow peer's buffers never filled"
            tally = await fanout.send([fast_eio_sid, slow_eio_sid], packet(sequence))
            assert tally.direct == 2
            assert await next_probe(fast) == sequence
            sequence += 1
            if session.transport.get_write_buffer_size() > 0:
                extra -= 1
        slow.writer.transport.resume_reading()  # type: ignore[attr-defined]
        assert [await next_probe(slow) for _ in range(sequence)] == list(range(sequence))

        running.gateway.websockets.max_unsent_bytes = 200_000
        slow.writer.transport.pause_reading()  # type: ignore[attr-defined]
        while slow_eio_sid in eio.sockets:
            assert sequence < 10_000, "the slow peer was never dropped"
            await fanout.send([fast_eio_sid, slow_eio_sid], packet(sequence))
            assert await next_probe(fast) == sequence
            sequence += 1
            await asyncio.sleep(0)
        await wait_until(lambda: running.gateway.registry.counts("slow").viewer_count == 1, "slow seat kept")
        metrics = await (await http.get(f"{running.url}/metrics")).text()
        assert "gateway_websockets_dropped_unread_total 1" in metrics.splitlines()
        fast.close()
        slow.close()


async def test_pings_keep_an_answering_session_and_drop_a_silent_one(tmp_path: Path) -> None:
    """Proves Engine.IO 4's heartbeat on this transport: the server pings every interval; a client
    that answers stays past several intervals, one that does not is closed after the ping timeout
    and leaves its room."""
    config = gateway_config(tmp_path, ping_interval_seconds=0.2, ping_timeout_seconds=0.3)
    async with running_gateway(config) as running:
        answering, _ = await RawClient.open_session(running.port, {"auctionId": "beat"})
        silent, _ = await RawClient.open_session(running.port, {"auctionId": "beat"})

        async def answer_pings(client: RawClient, seconds: float) -> int:
            pings = 0
            deadline = asyncio.get_running_loop().time() + seconds
            while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    opcode, payload = await asyncio.wait_for(client.frame(), remaining)
                except TimeoutError:
                    break
                if (opcode, payload) == (TEXT, b"2"):
                    pings += 1
                    client.send_text("3")
            return pings

        answered = asyncio.create_task(answer_pings(answering, 1.5))
        # The silent one reads its ping(s) but never answers: Engine.IO's CLOSE packet, then the close frame.
        silent_saw = []
        while (frame := await silent.frame())[0] == TEXT:
            silent_saw.append(frame[1])
        assert frame == (CLOSE, struct.pack("!H", 1000))
        assert silent_saw[-2:] == [b"2", b"1"]
        assert await answered >= 4
        assert running.gateway.registry.counts("beat").viewer_count == 1
        assert len(running.gateway.sio.eio.sockets) == 1
        answering.close()
        silent.close()


async def test_a_closed_session_leaves_no_task_or_timer_behind(tmp_path: Path) -> None:
    """Proves nothing outlives a session: after 100 connect+join+leave+close cycles the gateway's
    loop has the same tasks as before and no ping timer of theirs (python-engineio's own ping task
    sleeps 25 s after its socket closed)."""
    async with running_gateway(gateway_config(tmp_path)) as running:
        loop = asyncio.get_running_loop()
        warm, _ = await RawClient.open_session(running.port, {"auctionId": "churn"})
        warm.send(client_frame(CLOSE, struct.pack("!H", 1000)))
        await warm.closed_by_server()
        await wait_until(lambda: not running.gateway.sio.eio.sockets, "warm-up session not gone")
        tasks_before = len(asyncio.all_tasks())
        for _ in range(100):
            client, _ = await RawClient.open_session(running.port, {"auctionId": "churn"})
            client.send_text('42["leaveAuction"]')
            client.send(client_frame(CLOSE, struct.pack("!H", 1000)))
            await client.closed_by_server()
        await wait_until(lambda: not running.gateway.sio.eio.sockets, "sessions not gone")
        await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before, "tasks left behind")
        timers = [
            handle
            for handle in loop._scheduled  # type: ignore[attr-defined]
            if not handle.cancelled() and "WebSocketSession" in repr(handle)
        ]
        assert timers == []


async def test_everything_else_is_still_served_by_aiohttp(tmp_path: Path) -> None:
    """Proves the hand-over: a probe, a polling handshake, an oversized head and a WebSocket request
    from a refused origin get aiohttp's and python-engineio's own answers on the same port; a
    connection that never finishes its head is dropped after the head timeout."""
    async with running_gateway(gateway_config(tmp_path)) as running, aiohttp.ClientSession() as http:
        assert (await http.get(f"{running.url}/healthz")).status == 200
        polling = await http.get(f"{running.url}/socket.io/?EIO=4&transport=polling")
        assert polling.status == 200
        assert (await polling.text()).startswith("0{")
        refused, head = await RawClient.connect(
            running.port, upgrade_request(running.port, Origin="http://evil")
        )
        assert head.startswith(b"HTTP/1.1 400 ")
        refused.close()
        oversized, head = await RawClient.connect(
            running.port, upgrade_request(running.port, X_Big="y" * 9_000)
        )
        assert head.split(b" ")[1] in (b"400", b"431")
        oversized.close()
        running.gateway.websockets.head_timeout_seconds = 0.2
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n")
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
        await writer.wait_closed()


async def test_a_connect_flood_from_one_address_is_refused_with_429_on_this_transport(tmp_path: Path) -> None:
    """Proves the per-address limit applies to sessions served here, counted like aiohttp's refusals."""
    async with running_gateway(gateway_config(tmp_path, connections_per_ip_per_minute=5)) as running:
        statuses = []
        for _ in range(8):
            client, head = await RawClient.connect(running.port)
            statuses.append(int(head.split(b" ")[1]))
            client.close()
        assert statuses == [101] * 5 + [429] * 3
        assert running.gateway.metrics.connections_refused["rate_limited"] == 3


async def test_a_session_engineio_refuses_gets_401_and_is_never_upgraded(tmp_path: Path) -> None:
    """Proves the transport honours Engine.IO's connect event: a refusal (which python-socketio never
    gives; another Engine.IO application may) is answered 401 before any 101, and no session stays."""
    async with running_gateway(gateway_config(tmp_path)) as running:
        eio = running.gateway.sio.eio
        socketio_connect = eio.handlers["connect"]

        async def refuse(eio_sid: str, environ: dict[str, Any]) -> bool:
            return False

        eio.on("connect", refuse)
        try:
            client, head = await RawClient.connect(running.port)
            assert head.startswith(b"HTTP/1.1 401 ")
            await client.closed_by_server()
            assert not eio.sockets
        finally:
            eio.on("connect", socketio_connect)
        accepted, _ = await RawClient.open_session(running.port)
        accepted.close()
