"""The transport guarantees on a long-polling session upgraded to WebSocket (python-engineio's driver path).

A session opened directly on a WebSocket is the gateway's own (test_gateway_websocket_transport.py);
a long-polling one is python-engineio's, bounded by the session guard (test_gateway_hostile_transport.py).
The upgrade between them runs on ``EngineIOWebSocket``, the one driver class of the WebSockets
python-engineio serves: here a malformed frame, a malformed Socket.IO packet and a silent peer on such
a session are each held to what the other transports promise. The gateway is served as
``python -m socket_gateway`` serves it; the client is aiohttp speaking Engine.IO by hand.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.gateway_support import ALLOWED_ORIGIN, WAIT, gateway_config, running_gateway, wait_until

MALFORMED_LINE = "Malformed frame from a client; connection closed"


async def upgraded_session(
    http: aiohttp.ClientSession, port: int, auction_id: str
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A Socket.IO session joined to ``auction_id`` over long-polling, then upgraded to WebSocket."""
    base = f"http://127.0.0.1:{port}/socket.io/"
    headers = {"Origin": ALLOWED_ORIGIN}
    async with http.get(base, params={"EIO": "4", "transport": "polling"}, headers=headers) as response:
        assert response.status == 200
        sid = json.loads((await response.text())[1:])["sid"]
    query = {"EIO": "4", "transport": "polling", "sid": sid}
    body = "40" + json.dumps({"auctionId": auction_id})
    async with http.post(base, params=query, data=body.encode(), headers=headers) as response:
        assert response.status == 200
    async with http.get(base, params=query, headers=headers) as response:
        assert (await response.text()).startswith("40{")
    ws = await http.ws_connect(
        base.replace("http", "ws", 1),
        params={"EIO": "4", "transport": "websocket", "sid": sid},
        headers=headers,
        timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
    )
    await ws.send_str("2probe")
    assert await ws.receive_str(timeout=WAIT) == "3probe"
    await ws.send_str("5")
    return ws, sid


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Reads until the server closes the WebSocket (answering its pings meanwhile: not what is tested)."""
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return
        if message.type == aiohttp.WSMsgType.TEXT and message.data == "2":
            await ws.send_str("3")


@pytest.mark.parametrize("frame", ["", "x", "bnot base64!"], ids=["empty", "unknown-type", "bad-base64"])
async def test_a_malformed_engineio_frame_on_an_upgraded_session_closes_it_with_one_warning(
    tmp_path: Path, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_gateway(gateway_config(tmp_path)) as running, aiohttp.ClientSession() as http:
        ws, sid = await upgraded_session(http, running.port, "bad-frame")
        registry = running.gateway.registry
        await wait_until(lambda: registry.counts("bad-frame").viewer_count == 1, "not joined")
        await ws.send_str(frame)
        await closed_by_server(ws)
        await wait_until(lambda: registry.counts("bad-frame").viewer_count == 0, "seat kept after the frame")
        assert sid not in running.gateway.sio.eio.sockets
        lines = [record for record in caplog.records if record.getMessage() == MALFORMED_LINE]
        assert len(lines) == 1
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_malformed_socketio_packet_on_an_upgraded_session_closes_its_websocket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_gateway(gateway_config(tmp_path)) as running, aiohttp.ClientSession() as http:
        ws, sid = await upgraded_session(http, running.port, "bad-packet")
        registry = running.gateway.registry
        await wait_until(lambda: registry.counts("bad-packet").viewer_count == 1, "not joined")
        await ws.send_str("42[1]")  # an event without a string name
        await closed_by_server(ws)
        await wait_until(
            lambda: registry.counts("bad-packet").viewer_count == 0, "seat kept after the packet"
        )
        assert sid not in running.gateway.sio.eio.sockets
        assert len([record for record in caplog.records if record.getMessage() == MALFORMED_LINE]) == 1


async def test_an_upgraded_session_that_stops_answering_pings_is_dropped_and_one_that_answers_stays(
    tmp_path: Path,
) -> None:
    config = gateway_config(tmp_path, ping_interval_seconds=1.0, ping_timeout_seconds=1.0)
    async with running_gateway(config) as running, aiohttp.ClientSession() as http:
        silent, silent_sid = await upgraded_session(http, running.port, "pings")
        answering, answering_sid = await upgraded_session(http, running.port, "pings")
        sockets = running.gateway.sio.eio.sockets
        registry = running.gateway.registry
        await wait_until(lambda: registry.counts("pings").viewer_count == 2, "not joined")
        pings = 0
        # The answering client answers every ping until the silent one has been dropped.
        while silent_sid in sockets:
            message = await answering.receive(timeout=WAIT)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            if message.data == "2":
                pings += 1
                await answering.send_str("3")
        assert pings >= 1
        assert answering_sid in sockets
        await wait_until(lambda: registry.counts("pings").viewer_count == 1, "the silent one's seat kept")
        await silent.close()
        await answering.close()
