"""Log flood: what one hostile socket can make ``python -m socket_gateway`` write to its log.

Starts the gateway (JSON logs at INFO, stderr captured), opens one raw Engine.IO WebSocket, and
sends ``--frames`` Socket.IO packets of one ``--kind`` as fast as the socket takes them (bounded by
``--seconds``), each a packet the event layer refuses:

- ``unknown``: ``42["bid",{}]``, an event the gateway does not know;
- ``join``: ``42["joinAuction","bad id"]``, a malformed ``joinAuction``;
- ``reserved``: ``42["connect",{}]``, a connected socket sending an event named like a reserved one;
- ``refused``: ``40{"auctionId":"bad id"}``, a CONNECT refused for its ``auth``, again and again on
  the one Engine.IO session;
- ``namespace``: ``42/other,["x"]``, an event to a namespace the socket never connected to.

Waits until the gateway has handled them (its ``/metrics``, or its log going quiet for
``namespace``), stops it with SIGTERM, and reports the lines and bytes it wrote to stderr in all
and per message. Loopback only.

    .venv/bin/python -m bench.gateway_log_flood --kind unknown --frames 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from socket_gateway.metrics import parse_samples
from testkit.processes import spawn
from testkit.waiting import poll

KEY = "bench-internal-key-0123456789"

FRAMES = {
    "unknown": '42["bid",{}]',
    "join": '42["joinAuction","bad id"]',
    "reserved": '42["connect",{}]',
    "refused": '40{"auctionId":"bad id"}',
    "namespace": '42/other,["x"]',
}
# The counter each kind moves, and by how much per frame (None: no counter to wait on).
COUNTERS: dict[str, str | None] = {
    "unknown": 'gateway_malformed_events_total{event="unknown"}',
    "join": 'gateway_malformed_events_total{event="joinAuction"}',
    "reserved": 'gateway_malformed_events_total{event="unknown"}',
    "refused": 'gateway_connections_refused_total{reason="malformed_auth"}',
    "namespace": None,
}


async def flood(kind: str, frames: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="log-flood-") as scratch:
        stderr_path = Path(scratch) / "gateway.stderr"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "INGEST_", "OUTBOX_"))},
            "INTERNAL_API_KEY": KEY,
            "INGEST_TARGET": "127.0.0.1:1",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": "0",
            "GATEWAY_GRPC_PORT": "0",
            "OUTBOX_PATH": str(Path(scratch) / "outbox.sqlite3"),
            "GATEWAY_SHUTDOWN_FLUSH_SECONDS": "0",
            "ALLOWED_ORIGIN": "*",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
        }
        with stderr_path.open("wb") as stderr:
            process = await spawn("socket_gateway", env, stderr=stderr)
            try:
                port = await _listening_port(stderr_path)
                sent, elapsed = await _send(port, kind, frames, seconds)
            finally:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 30)
        raw = stderr_path.read_bytes()
    lines = raw.splitlines()
    messages: Counter[str] = Counter()
    suppressed = 0
    for line in lines:
        entry = json.loads(line)
        messages[entry["message"]] += 1
        suppressed += int(entry.get("suppressed", 0))
    return {
        "kind": kind,
        "frame": FRAMES[kind],
        "frames_sent": sent,
        "send_seconds": round(elapsed, 2),
        "lines": len(lines),
        "bytes": len(raw),
        "suppressed_reported_in_lines": suppressed,
        "lines_by_message": dict(messages.most_common()),
    }


async def _listening_port(stderr_path: Path) -> int:
    """The port in the gateway's start-up line, read from its log file (the file is what is measured)."""
    ports: list[int] = []

    async def listening() -> bool:
        for line in (await asyncio.to_thread(stderr_path.read_bytes)).splitlines():
            entry = json.loads(line)
            if entry.get("message") == "Socket gateway listening":
                ports.append(int(entry["port"]))
                return True
        return False

    await poll(listening, "the gateway's start-up line", within=30)
    return ports[0]


async def _send(port: int, kind: str, frames: int, seconds: float) -> tuple[int, float]:
    url = f"http://127.0.0.1:{port}"
    frame = FRAMES[kind]
    counter = COUNTERS[kind]
    async with aiohttp.ClientSession() as http:
        before = await _counter(http, url, counter)
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", autoping=False)
        assert (await ws.receive_str()).startswith("0{")
        if kind != "refused":
            await ws.send_str("40")
            assert (await ws.receive_str()).startswith("40{")
        started = time.monotonic()
        sent = 0
        while sent < frames and time.monotonic() - started < seconds:
            await ws.send_str(frame)
            sent += 1
        # Handled, as far as /metrics can tell (and the log has caught up with it).
        deadline = time.monotonic() + 120
        while counter is not None and await _counter(http, url, counter) - before < sent:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not handle the flood in time")
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        await ws.close()
    return sent, elapsed


async def _counter(http: aiohttp.ClientSession, url: str, name: str | None) -> float:
    if name is None:
        return 0.0
    samples = parse_samples(await (await http.get(f"{url}/metrics")).text())
    return samples.get(name, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=sorted(FRAMES), default="unknown")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="stop sending after this long")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(flood(args.kind, args.frames, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
