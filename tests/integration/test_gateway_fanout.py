"""Count updates written straight into WebSockets: in order, isolated from slow peers, on every transport.

A real gateway on a free loopback port; raw WebSocket clients read the frames as they arrive, so
the order of packets on the wire is what the tests see. A client asking for the WebSocket transport
at once is served by ``websocket_transport``; the tests marked "aiohttp-served" run the gateway with
every request served by aiohttp, so that their WebSockets are python-engineio's own (as a polling
session's upgrade is) and RoomFanout's idle-writer rule is what they exercise.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import engineio  # type: ignore[import-untyped]
import pytest
from aiohttp._websocket.writer import WebSocketWriter

from socket_gateway.app import Gateway
from socket_gateway.transport.frames import websocket_text_frame
from tests.gateway_support import ALLOWED_ORIGIN, WAIT, Viewer, gateway_config, running_gateway


class Frames:
    """A raw Engine.IO/Socket.IO client over aiohttp's WebSocket: every text frame in arrival order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[str] = []

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, auth: dict[str, Any]) -> Frames:
        ws = await http.ws_connect(
            f"{url}/socket.io/?EIO=4&transport=websocket", headers={"Origin": ALLOWED_ORIGIN}
        )
        frames = cls(ws)
        assert (await frames.next()).startswith("0{")
        await ws.send_str("40" + json.dumps(auth))
        return frames

    async def next(self) -> str:
        while True:
            frame = await self.ws.receive_str(timeout=WAIT)
            if frame == "2":  # Engine.IO ping
                await self.ws.send_str("3")
                continue
            self.seen.append(frame)
            return frame

    async def next_probe(self) -> int:
        """The sequence number of the next probe packet, skipping count updates."""
        while True:
            frame = await self.next()
            if frame.startswith('42["probe",'):
                return int(json.loads(frame[2:])[1])

    async def until(self, wanted: str) -> list[str]:
        """Frames up to and including ``wanted``."""
        start = len(self.seen)
        while await self.next() != wanted:
            pass
        return self.seen[start:]


def probe(sequence: int, path: str) -> engineio.packet.Packet:
    return engineio.packet.Packet(engineio.packet.MESSAGE, f'2["probe",{sequence},"{path}"]')


def eio_sid_of(gateway: Gateway, sid: str) -> str:
    eio_sid = gateway.sio.manager.eio_sid_from_sid(sid, "/")
    assert eio_sid is not None
    return str(eio_sid)


async def test_a_direct_write_never_overtakes_a_packet_queued_before_it(tmp_path: Path) -> None:
    """Proves the idle-writer rule (aiohttp-served): queued-then-direct arrive in order, whatever
    Engine.IO's writer is doing.

    Each round queues a packet on the socket's Engine.IO queue, lets the event loop turn k times
    (walking the writer through taking, holding and writing the packet), then sends a second packet
    through the fan-out. Some rounds must have gone direct and some through the queue, or the test
    did not exercise the rule.
    """
    async with (
        running_gateway(gateway_config(tmp_path), websockets_through_aiohttp=True) as running,
        aiohttp.ClientSession() as http,
    ):
        client = await Frames.open(http, running.url, {"auctionId": "order"})
        connected = await client.next()
        assert connected.startswith("40{")
        sid = json.loads(connected[2:])["sid"]
        eio_sid = eio_sid_of(running.gateway, sid)
        direct_rounds = 0
        for turns in range(12):
            # Each round starts from an idle writer: the last round's packets have arrived.
            await running.gateway.sio.eio.send_packet(eio_sid, probe(turns, "queued"))
            for _ in range(turns):
                await asyncio.sleep(0)
            tally = await running.gateway.fanout.send([eio_sid], probe(turns, "second"))
            direct_rounds += tally.direct
            received = [f for f in await client.until(f'42["probe",{turns},"second"]') if '"probe"' in f]
            assert received == [f'42["probe",{turns},"queued"]', f'42["probe",{turns},"second"]']
        assert 0 < direct_rounds < 12


async def test_a_binary_packet_takes_the_queue_and_arrives_as_a_binary_frame(tmp_path: Path) -> None:
    """Proves the direct path only carries what it can frame (text): binary goes through Engine.IO."""
    async with running_gateway(gateway_config(tmp_path)) as running, aiohttp.ClientSession() as http:
        client = await Frames.open(http, running.url, {"auctionId": "binary"})
        sid = json.loads((await client.next())[2:])["sid"]
        tally = await running.gateway.fanout.send(
            [eio_sid_of(running.gateway, sid)], engineio.packet.Packet(engineio.packet.MESSAGE, b"\x00\xff")
        )
        assert (tally.direct, tally.queued) == (0, 1)
        message = await client.ws.receive(timeout=WAIT)
        while message.type == aiohttp.WSMsgType.TEXT:  # count updates of the room, if any
            message = await client.ws.receive(timeout=WAIT)
        assert message.type == aiohttp.WSMsgType.BINARY
        assert message.data == b"\x00\xff"


async def test_sockets_connecting_into_a_busy_room_hear_connect_before_any_count(tmp_path: Path) -> None:
    """Proves no count update (direct or queued) reaches a socket before its Socket.IO CONNECT packet."""
    config = gateway_config(tmp_path, count_update_interval_ms=1, connections_per_ip_per_minute=10_000)
    async with running_gateway(config) as running, aiohttp.ClientSession() as http:
        churn = await running.viewer()
        stop = asyncio.Event()

        async def keep_changing_the_room() -> None:
            while not stop.is_set():
                await churn.call("joinAuction", {"auctionId": "busy"})
                await churn.call("leaveAuction")

        changing = asyncio.create_task(keep_changing_the_room())
        try:
            joiners = await asyncio.gather(
                *(Frames.open(http, running.url, {"auctionId": "busy"}) for _ in range(40))
            )
            firsts = await asyncio.gather(*(joiner.next() for joiner in joiners))
            counts = await asyncio.gather(*(joiner.next() for joiner in joiners))
        finally:
            stop.set()
            await changing
        assert all(first.startswith("40{") for first in firsts), firsts
        assert all(count.startswith('42["viewerCountUpdate"') for count in counts), counts
        assert running.gateway.metrics.count_messages_direct_total > 0
        for joiner in joiners:
            await joiner.ws.close()


async def test_a_peer_that_stops_reading_neither_holds_up_the_room_nor_loses_an_update(
    tmp_path: Path,
) -> None:
    """Proves slow-peer isolation (aiohttp-served): once its unsent bytes pass the high-water mark it is
    served from its own Engine.IO queue, the fast peer keeps getting every packet at once, and when
    the slow peer reads again it gets every packet, in order, none lost."""
    async with (
        running_gateway(gateway_config(tmp_path), websockets_through_aiohttp=True) as running,
        aiohttp.ClientSession() as http,
        # its own connection pool, so pausing this socket's reading affects nothing else
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as slow_http,
    ):
        fast = await Frames.open(http, running.url, {"auctionId": "slow"})
        fast_sid = json.loads((await fast.next())[2:])["sid"]
        slow = await Frames.open(slow_http, running.url, {"auctionId": "slow"})
        slow_sid = json.loads((await slow.next())[2:])["sid"]
        fanout = running.gateway.fanout
        peers = [eio_sid_of(running.gateway, fast_sid), eio_sid_of(running.gateway, slow_sid)]
        slow_connection = slow.ws._response.connection
        assert slow_connection is not None
        assert slow_connection.transport is not None
        slow_transport = slow_connection.transport
        # Not reading from the socket fills the kernel's buffers (a few MB on loopback), then the
        # server's: as for a stalled phone.
        slow_transport.pause_reading()

        filler = "x" * 16_000

        def packet(sequence: int) -> engineio.packet.Packet:
            return engineio.packet.Packet(engineio.packet.MESSAGE, f'2["probe",{sequence},"{filler}"]')

        sequence = 0
        queued_for_slow = False
        while not queued_for_slow:
            assert sequence < 5_000, "the slow peer's buffers never filled"
            tally = await fanout.send(peers, packet(sequence))
            assert tally.direct >= 1  # the fast peer is always written directly
            queued_for_slow = tally.queued == 1
            assert await fast.next_probe() == sequence
            sequence += 1
        for _ in range(20):  # the room keeps going while the slow peer is stuck
            assert (await fanout.send(peers, packet(sequence))).direct == 1
            assert await fast.next_probe() == sequence
            sequence += 1

        slow_transport.resume_reading()
        assert [await slow.next_probe() for _ in range(sequence)] == list(range(sequence))
        await fast.ws.close()
        await slow.ws.close()


async def test_polling_and_upgraded_clients_get_the_same_counts(tmp_path: Path) -> None:
    """Proves every transport ends on the true count: long-polling sockets keep the queue, sockets
    that upgrade from polling to WebSocket are written directly once upgraded."""
    async with running_gateway(gateway_config(tmp_path)) as running:
        polling = Viewer(running.url)
        await polling.client.connect(
            running.url, auth={"auctionId": "mixed"}, transports=["polling"], wait_timeout=WAIT
        )
        upgrading = Viewer(running.url)
        await upgrading.client.connect(running.url, auth={"auctionId": "mixed"}, wait_timeout=WAIT)
        running.viewers.append(upgrading)
        for _ in range(200):
            if upgrading.client.transport() == "websocket" and running.gateway.fanout.websocket_sessions:
                break
            await asyncio.sleep(0.01)
        assert running.gateway.fanout.websocket_sessions == 1
        direct_before = running.gateway.metrics.count_messages_direct_total
        third = await running.viewer({"auctionId": "mixed"})
        for viewer in (polling, upgrading, third):
            await viewer.wait_for(3)
        await third.disconnect()
        for viewer in (polling, upgrading):
            await viewer.wait_for(2)
        # the upgraded and the WebSocket viewer were written directly; the polling one was not
        assert running.gateway.metrics.count_messages_direct_total - direct_before >= 2
        # Without abort, python-socketio's polling client waits ~30 s for its last long-poll: the
        # server (python-engineio) does not end a pending poll when the client closes.
        await polling.client.eio.disconnect(abort=True)
        await polling.disconnect()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
async def test_frames_are_byte_for_byte_what_aiohttp_writes(length: int) -> None:
    """Proves the hand-built frame header for every length class against aiohttp's own writer."""

    class Captured(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.data = b""

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.data += bytes(data)

        def is_closing(self) -> bool:
            return False

    class Protocol:
        async def _drain_helper(self) -> None:
            return None

    transport = Captured()
    writer = WebSocketWriter(Protocol(), transport)  # type: ignore[arg-type]
    text = "é" * (length // 2) + "a" * (length % 2)
    await writer.send_frame(text.encode(), aiohttp.WSMsgType.TEXT)
    assert websocket_text_frame(text) == transport.data
