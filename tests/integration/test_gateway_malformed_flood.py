"""A flood of malformed frames against ``python -m socket_gateway``: bounded logs, exact counts, still up.

The real process, so the test covers what ``main()`` wires (the malformed-frame guard) and what the
process writes to stderr, every line of it: python-engineio's own stderr handler would print plain-
text tracebacks beside the JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from tests.fault_support import base_env, metrics, poll, service
from tests.gateway_support import Viewer

CONNECTIONS = 60
FRAMES_PER_CONNECTION = 20
# Engine.IO garbage, Socket.IO garbage, and events python-socketio decodes but cannot dispatch.
BAD_FRAMES: tuple[str | bytes, ...] = ("", "x", "9", "4{", "42[", "42[1]", '42[{"a":1}]', "42[]", b"\x00\x01")


async def test_a_flood_of_malformed_frames_costs_a_bounded_number_of_log_lines(tmp_path: Path) -> None:
    """Proves that 1,200 malformed frames on 60 connections, each joined to the watched room first,
    leave the process up and healthy, a well-behaved viewer in the same room on the exact count
    (itself alone once the flood is over), no ERROR and no plain-text line on stderr, and at most the
    malformed-frame log's burst of 10 plus one line a second about it."""
    env = base_env(
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT="0",
        GATEWAY_GRPC_PORT="0",
        INGEST_TARGET="127.0.0.1:1",
        OUTBOX_PATH=str(tmp_path / "outbox.sqlite3"),
        ALLOWED_ORIGIN="*",
        GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE="100000",
        GATEWAY_SHUTDOWN_FLUSH_SECONDS="0",
    )
    async with service("socket_gateway", env) as gateway, aiohttp.ClientSession() as http:
        port = int((await gateway.log_entry("Socket gateway listening"))["port"])
        url = f"http://127.0.0.1:{port}"
        watcher = await Viewer(url).connect({"auctionId": "flood-room"})
        started = time.monotonic()
        try:
            await watcher.wait_for(1)

            async def hostile(n: int) -> None:
                ws = await http.ws_connect(
                    f"{url}/socket.io/?EIO=4&transport=websocket",
                    timeout=aiohttp.ClientWSTimeout(ws_close=0.5),
                )
                try:
                    assert (await ws.receive_str()).startswith("0{")
                    await ws.send_str('40{"auctionId":"flood-room"}')
                    assert (await ws.receive_str()).startswith("40{")
                    for k in range(FRAMES_PER_CONNECTION):
                        frame = BAD_FRAMES[(n + k) % len(BAD_FRAMES)]
                        if ws.closed:
                            break
                        with_send = ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame)
                        try:
                            await with_send
                        except ConnectionResetError:
                            break
                finally:
                    await ws.close()

            await asyncio.gather(*(hostile(n) for n in range(CONNECTIONS)))

            async def only_the_watcher_left() -> bool:
                return (await metrics(http, port))["gateway_room_members"] == 1

            await poll(only_the_watcher_left, "the hostile sockets to leave the room")
            await watcher.wait_for(1)
            assert (await http.get(f"{url}/healthz")).status == 200
            assert gateway.process.returncode is None
        finally:
            await watcher.disconnect()
        elapsed = time.monotonic() - started

    reported = gateway.entries("Malformed frame from a client; connection closed")
    assert 1 <= len(reported) <= 10 + elapsed
    assert sum(int(entry["suppressed"]) for entry in reported) <= CONNECTIONS * FRAMES_PER_CONNECTION
    assert not [entry for entry in gateway.logs if entry.get("level") in ("ERROR", "CRITICAL")]
    assert all("level" in entry for entry in gateway.logs), "a line on stderr that is not the JSON log"
    assert len(gateway.logs) < 40, json.dumps(gateway.logs[-5:])
