"""Hostile clients without a key against a real ingest process: memory held and log lines written.

Not a test: it prints the figures ``docs/reliability.md`` quotes. Every attack is bounded in count and
time and goes to loopback only. Run from the repository root::

    .venv/bin/python -m bench.ingest_hostile watch --streams 100 --name-bytes 4000000
    .venv/bin/python -m bench.ingest_hostile unauthenticated --seconds 10
    .venv/bin/python -m bench.ingest_hostile corrupt --calls 200

``watch`` opens ``--streams`` ``Health/Watch`` streams, each naming a service of ``--name-bytes``
bytes, waits until each is answered (a first status, or refused), reads the service's RSS while they
are open, closes them all and reads it again 2 s later. ``unauthenticated`` calls
``GetAuctionSettings`` without a key, 32 calls in flight, for ``--seconds``. ``corrupt`` sends
``--calls`` undecodable requests to every unary method (health included) with the key. Each prints
the RSS figures and the service's log lines by level and message as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from bench.ingest_process import IngestProcess
from service_common.internal_auth import internal_key_metadata
from testkit.measure import rss_kib

UNARY_METHODS = (
    "/viewer_analytics.v1.AuctionSettingsService/GetAuctionSettings",
    "/viewer_analytics.v1.AuctionSettingsService/SetViewerAnalytics",
    "/viewer_analytics.v1.ViewerAnalyticsService/QueryViewerAnalytics",
    "/grpc.health.v1.Health/Check",
)
# Field 1 (a string) holding bytes that are not UTF-8: no protobuf message of these methods parses it.
CORRUPT = b"\x0a\x02\xff\xfe"


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def log_counts(log_path: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for raw in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            counts[f"(not JSON) {raw[:80]}"] += 1
            continue
        traceback = " +traceback" if "exception" in entry else ""
        counts[f"{entry.get('level', '?')} {entry.get('message', '?')}{traceback}"] += 1
    return dict(counts)


async def watch(target: str, pid: int, streams: int, name_bytes: int) -> dict[str, Any]:
    name = "x" * name_bytes
    channel = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", name_bytes + 1024)])
    method = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    calls = [method(health_pb2.HealthCheckRequest(service=name)) for _ in range(streams)]
    outcomes: collections.Counter[str] = collections.Counter()

    async def first_answer(call: Any) -> None:
        try:
            response = await asyncio.wait_for(call.read(), 60)
            outcomes[health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)] += 1
        except grpc.aio.AioRpcError as error:
            outcomes[error.code().name] += 1

    await asyncio.gather(*(first_answer(call) for call in calls))
    held = rss_mib(pid)
    for call in calls:
        call.cancel()
    await channel.close()
    await asyncio.sleep(2)
    return {"answers": dict(outcomes), "rss_mib_while_open": held, "rss_mib_after_close": rss_mib(pid)}


async def unauthenticated(target: str, seconds: float) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(target) as channel:
        method = channel.unary_unary(UNARY_METHODS[0], request_serializer=None, response_deserializer=None)
        deadline = time.monotonic() + seconds
        codes: collections.Counter[str] = collections.Counter()

        async def caller() -> None:
            while time.monotonic() < deadline:
                try:
                    await method(b"\x0a\x01a", timeout=5)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1

        await asyncio.gather(*(caller() for _ in range(32)))
    return {"calls": dict(codes)}


async def corrupt(target: str, key: str, calls: int) -> dict[str, Any]:
    codes: dict[str, collections.Counter[str]] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        for path in UNARY_METHODS:
            method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            seen = codes[path] = collections.Counter()
            for _ in range(calls):
                try:
                    await method(CORRUPT, metadata=internal_key_metadata(key), timeout=5)
                    seen["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    seen[f"{error.code().name}: {error.details()}"] += 1
    return {"answers": {path: dict(seen) for path, seen in codes.items()}}


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ingest-hostile-") as directory:
        log_path = Path(directory) / "ingest.log"
        settings = {
            "INTERNAL_API_KEY": key,
            "ANALYTICS_SQLITE_PATH": str(Path(directory) / "store.sqlite3"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
        }
        async with IngestProcess(settings, log_path, cpu=None) as service:
            before = rss_mib(service.pid)
            log_before = sum(log_counts(log_path).values())
            if arguments.attack == "watch":
                figures = await watch(service.target, service.pid, arguments.streams, arguments.name_bytes)
            elif arguments.attack == "unauthenticated":
                figures = await unauthenticated(service.target, arguments.seconds)
            else:
                figures = await corrupt(service.target, key, arguments.calls)
            figures["rss_mib_before"] = before
            await asyncio.sleep(0.5)
            counts = log_counts(log_path)
            figures["log_lines_during_attack"] = sum(counts.values()) - log_before
            figures["log_lines_by_message"] = counts
        return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="attack", required=True)
    watch_parser = commands.add_parser("watch")
    watch_parser.add_argument("--streams", type=int, default=100, choices=range(1, 1001), metavar="N")
    watch_parser.add_argument("--name-bytes", type=int, default=4_000_000)
    flood_parser = commands.add_parser("unauthenticated")
    flood_parser.add_argument("--seconds", type=float, default=10.0)
    corrupt_parser = commands.add_parser("corrupt")
    corrupt_parser.add_argument("--calls", type=int, default=200)
    arguments = parser.parse_args(argv)
    if arguments.attack == "watch" and not 0 < arguments.name_bytes <= 16_000_000:
        parser.error("--name-bytes must be within 1..16,000,000")
    if arguments.attack == "unauthenticated" and not 0 < arguments.seconds <= 60:
        parser.error("--seconds must be within 0..60")
    print(json.dumps(asyncio.run(run(arguments)), indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
