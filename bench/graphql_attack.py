"""The GraphQL API under one expensive request: response bytes, time, and /healthz latency meanwhile.

Run from the repository root (figures: docs/reliability.md)::

    .venv/bin/python -m bench.graphql_attack

Starts ``python -m ingest_service`` on a fresh SQLite file, seeds ``--minutes`` minutes (20,000 by
default) of one auction through the ingest stream, starts ``python -m graphql_api`` and sends, as
the auction's seller, each workload below once while a prober asks ``/healthz`` on its own
connection every 5 ms. For each workload: HTTP status, error codes, response bytes, wall time, and
the /healthz latency (max and p99) while the request was in flight: a /healthz held longer than a
few milliseconds means the API's event loop was blocked. Then it counts the API's log lines over
``--repeat`` rounds of hostile requests (malformed HTTP, refused queries, /readyz), which no client
should be able to turn into as many lines. Loopback only; bounded in count and time.

Workloads:
    idle: nothing for 1 s: the prober's own noise floor on this machine
    attack: 14 aliases of ``viewerAnalytics(range: ALL, bucket: MINUTE)`` (the issue's 1.7 KB request)
    one-series: one ``viewerAnalytics(range: ALL, bucket: MINUTE)``: the largest series one field returns
    csv: the CSV export of the same series
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc

from bench.graphql_latency import ChildServer
from bench.ingest_process import IngestProcess, free_loopback_port
from graphql_api.auth import Role, issue_token
from service_common.internal_auth import internal_key_metadata
from testkit.seeding import minute_snapshots, seed
from testkit.stats import percentile

AUCTION = "bench-attack"
PROBE_INTERVAL_SECONDS = 0.005
POINT_FIELDS = "at avgViewers peakViewers minViewers viewerCount samples"


def alias_query(aliases: int) -> str:
    fields = "\n".join(
        f"    a{i}: viewerAnalytics(range: ALL, bucket: MINUTE) {{ points {{ {POINT_FIELDS} }} }}"
        for i in range(aliases)
    )
    return f'{{\n  auction(id: "{AUCTION}") {{\n{fields}\n  }}\n}}'


async def seed_minutes(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], minutes: int
) -> None:
    """Enables the auction and streams ``minutes`` minutes ending at the current minute."""
    first = int(time.time()) // 60 * 60 - minutes * 60
    seeded = await seed(channel, metadata, minute_snapshots(AUCTION, first, minutes, "bench"))
    if seeded.outcomes != ["STORED"] * minutes:
        raise RuntimeError(f"not every minute was stored: {sorted(set(seeded.outcomes))}")


@dataclass
class Outcome:
    workload: str
    status: int
    codes: list[str]
    response_bytes: int
    seconds: float
    healthz_max_ms: float
    healthz_p99_ms: float
    probes: int

    def describe(self) -> str:
        return (
            f"{self.workload:>10}: HTTP {self.status} codes={self.codes} {self.response_bytes:,} bytes "
            f"in {self.seconds:.3f} s; /healthz meanwhile max {self.healthz_max_ms:.1f} ms, "
            f"p99 {self.healthz_p99_ms:.1f} ms ({self.probes} probes)"
        )


async def probe_while(base: str, work: Callable[[], Awaitable[tuple[int, bytes]]], name: str) -> Outcome:
    """Runs ``work`` while /healthz is asked every 5 ms on a connection of its own."""
    latencies: list[float] = []
    stop = asyncio.Event()
    connected = asyncio.Event()

    async def prober() -> None:
        async with aiohttp.ClientSession() as own:
            while not stop.is_set():
                started = time.perf_counter()
                async with own.get(f"{base}/healthz") as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                connected.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_SECONDS)

    probing = asyncio.create_task(prober())
    # Let the prober's connection open before the measured request starts.
    await connected.wait()
    latencies.clear()
    started = time.perf_counter()
    status, body = await work()
    seconds = time.perf_counter() - started
    stop.set()
    await probing
    codes: list[str] = []
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        if isinstance(answer, dict):
            codes = [str((e.get("extensions") or {}).get("code")) for e in answer.get("errors") or []]
    ordered = latencies or [0.0]
    return Outcome(
        name,
        status,
        codes,
        len(body),
        seconds,
        max(ordered) * 1000,
        percentile(ordered, 0.99) * 1000,
        len(latencies),
    )


def count_lines(log_path: Path, since: int) -> tuple[int, int]:
    """Lines the API logged after byte ``since``, and how many of them carry a traceback."""
    text = log_path.read_bytes()[since:].decode(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines), sum("Traceback" in line for line in lines)


def raw_http(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(payload)
        with contextlib.suppress(OSError):
            raw.recv(4096)


async def main_async(options: argparse.Namespace) -> None:
    key = secrets.token_urlsafe(32)
    jwt_secret = secrets.token_urlsafe(48)
    metadata = internal_key_metadata(key)
    seller = issue_token(
        jwt_secret,
        subject="seller-1",
        role=Role.SELLER,
        auctions=[AUCTION],
        now=time.time(),
        lifetime_seconds=3600,
    )
    headers = {"Authorization": f"Bearer {seller}"}
    with tempfile.TemporaryDirectory(prefix="bench-graphql-attack-") as workdir_name:
        workdir = Path(workdir_name)
        ingest_settings = {
            "INTERNAL_API_KEY": key,
            "ANALYTICS_SQLITE_PATH": str(workdir / "analytics.sqlite3"),
            "LOG_LEVEL": "warning",
        }
        async with (
            IngestProcess(ingest_settings, workdir / "ingest.log", cpu=None) as ingest,
            grpc.aio.insecure_channel(ingest.target) as channel,
            aiohttp.ClientSession() as session,
        ):
            await seed_minutes(channel, metadata, options.minutes)
            print(f"seeded {options.minutes} minutes of {AUCTION}", flush=True)
            port = free_loopback_port()
            log_path = workdir / "api.log"
            api = ChildServer(
                "graphql_api",
                "graphql_api",
                {
                    "INTERNAL_API_KEY": key,
                    "INGEST_TARGET": ingest.target,
                    "LOG_LEVEL": "info",
                    "LOG_FORMAT": "json",
                    "GRAPHQL_JWT_SECRET": jwt_secret,
                    "GRAPHQL_PORT": str(port),
                    "GRAPHQL_HOST": "127.0.0.1",
                    "GRAPHQL_INGEST_TIMEOUT_SECONDS": "30",
                },
                log_path,
                cpu=None,
            )
            base = f"http://127.0.0.1:{port}"
            await api.start(f"{base}/healthz", session)
            try:
                query = alias_query(options.aliases)

                async def post(document: str) -> tuple[int, bytes]:
                    async with session.post(
                        f"{base}/graphql", json={"query": document}, headers=headers
                    ) as r:
                        return r.status, await r.read()

                async def csv() -> tuple[int, bytes]:
                    path = f"/export/auctions/{AUCTION}/viewer-analytics.csv?range=ALL&bucket=MINUTE"
                    async with session.get(f"{base}{path}", headers=headers) as r:
                        return r.status, await r.read()

                print(f"attack document: {len(query.encode())} bytes, {options.aliases} aliases", flush=True)
                print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared with other work)")

                async def idle() -> tuple[int, bytes]:
                    await asyncio.sleep(1.0)
                    return 0, b""

                for name, work in (
                    ("idle", idle),
                    ("attack", lambda: post(query)),
                    ("one-series", lambda: post(alias_query(1))),
                    ("csv", csv),
                ):
                    for _ in range(options.trials):
                        outcome = await probe_while(base, work, name)
                        print(outcome.describe(), flush=True)
                since = log_path.stat().st_size
                loop = asyncio.get_running_loop()
                for _ in range(options.repeat):
                    await loop.run_in_executor(
                        None, raw_http, port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
                    )
                    await post("query($b: Boolean!) { __typename }")
                    await post('{ auction(id: "") { id } }')
                    async with session.get(f"{base}/readyz") as ready:
                        await ready.read()
                lines, tracebacks = count_lines(log_path, since)
                print(
                    f"log: {lines} lines ({tracebacks} with a traceback) for {options.repeat} rounds of "
                    "malformed HTTP + a variable error + a refused auction id + /readyz",
                    flush=True,
                )
            finally:
                await api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=20_000)
    parser.add_argument("--aliases", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--trials", type=int, default=3, help="times each workload is sent")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
