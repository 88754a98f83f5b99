"""GraphQL API latency: the 90-day query and a small settings query, against a bare aiohttp baseline.

Run from the repository root (figures and their meaning: docs/benchmarks.md, "GraphQL API")::

    .venv/bin/python -m bench.graphql_latency              # 40 rounds
    .venv/bin/python -m bench.graphql_latency --rounds 10  # quicker, noisier

Starts ``python -m ingest_service`` on a fresh SQLite file, seeds 90 days of one auction (129,600
minutes, batches of 500 on one stream), then starts ``python -m graphql_api`` and the baseline
(``python -m bench.graphql_baseline``: a bare aiohttp handler making the same gRPC calls and
returning the same JSON, without GraphQL, auth or validation). The three servers are pinned to CPU 0,
this client to CPU 1 (the machine has two). Each round sends each workload once to the API, once to
the baseline and once straight to the ingest service over gRPC (the floor), in rotating order, one
request at a time: latency, not throughput. The API's overhead is reported as ratios measured in the
same run. The first response of each kind is checked (point count, summary) so that the figures
cannot come from an error page.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2_grpc as analytics_grpc

from bench.graphql_baseline import ONE_BUCKET_SECONDS
from bench.ingest_process import IngestProcess, free_loopback_port
from graphql_api.auth import Role, issue_token
from service_common.internal_auth import internal_key_metadata
from testkit.processes import spawn
from testkit.seeding import NINETY_DAYS, seed_ninety_days
from testkit.stats import percentile
from testkit.waiting import poll

AUCTION = "bench-auction-90d"
GOAL_P95_SECONDS = 0.100  # issue 4: 90-day query p95 at most 100 ms
_STARTUP_TIMEOUT_SECONDS = 30.0

ANALYTICS_QUERY = """query($id: ID!, $bucket: Bucket!) { auction(id: $id) { viewerAnalytics(bucket: $bucket) {
  bucketSeconds points { at avgViewers peakViewers minViewers viewerCount samples }
  summary { overallPeak overallAvg durationMinutes firstAt lastAt snapshotCount } } } }"""
SETTINGS_QUERY = "query($id: ID!) { auction(id: $id) { settings { enableViewerAnalytics updatedAt } } }"


class ChildServer:
    """A server in a child process pinned to ``cpu``; ready once ``health_url`` answers 200."""

    def __init__(self, name: str, module: str, env: Mapping[str, str], log_path: Path, cpu: int | None):
        self.name = name
        self._module = module
        self._cpus = str(cpu) if cpu is not None and shutil.which("taskset") else None
        self._env = {**os.environ, **env}
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, health_url: str, session: aiohttp.ClientSession) -> None:
        with self._log_path.open("ab") as log:
            self._process = await spawn(self._module, self._env, stderr=log, stdout=log, cpus=self._cpus)
        process = self._process

        async def healthy() -> bool:
            if process.returncode is not None:
                raise RuntimeError(f"{self.name} exited: {self._log_path.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(health_url) as response:
                    return response.status == 200
            return False

        # Polling a child that is still binding its port: there is no event to await.
        await poll(healthy, f"{self.name} to answer {health_url}", within=_STARTUP_TIMEOUT_SECONDS)

    async def stop(self) -> int | None:
        if self._process is None or self._process.returncode is not None:
            return None if self._process is None else self._process.returncode
        self._process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self._process.wait(), 30)


@dataclass(frozen=True)
class Figures:
    workload: str
    server: str
    requests: int
    p50_ms: float
    p95_ms: float
    mean_ms: float


Probe = Callable[[], Awaitable[Any]]


async def main_async(options: argparse.Namespace) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    # Other work on the machine disturbs latency; the load average is reported with the figures.
    load_before = os.getloadavg()[0]
    key = secrets.token_urlsafe(32)
    jwt_secret = secrets.token_urlsafe(48)
    metadata = internal_key_metadata(key)
    with tempfile.TemporaryDirectory(prefix="bench-graphql-") as workdir_name:
        workdir = Path(workdir_name)
        ingest_settings = {
            "INTERNAL_API_KEY": key,
            "ANALYTICS_SQLITE_PATH": str(workdir / "analytics.sqlite3"),
            # The data span exactly 90 days ending now; a day more keeps the oldest clear of the edge.
            "VIEWER_ANALYTICS_RETENTION_DAYS": "91",
            "LOG_LEVEL": "warning",
        }
        async with (
            IngestProcess(ingest_settings, workdir / "ingest.log", cpu=0) as ingest,
            grpc.aio.insecure_channel(ingest.target) as channel,
            aiohttp.ClientSession() as session,
        ):
            seeded = await seed_ninety_days(channel, metadata, AUCTION, int(time.time()) // 60 * 60, "bench")
            if seeded.outcomes != ["STORED"] * NINETY_DAYS:
                raise RuntimeError(f"not every minute was stored: {sorted(set(seeded.outcomes))}")
            seed_seconds = seeded.seconds
            print(f"seeded {NINETY_DAYS} minutes in {seed_seconds:.2f} s", flush=True)
            api_port, baseline_port = free_loopback_port(), free_loopback_port()
            common = {"INTERNAL_API_KEY": key, "INGEST_TARGET": ingest.target, "LOG_LEVEL": "warning"}
            api = ChildServer(
                "graphql_api",
                "graphql_api",
                {
                    **common,
                    "GRAPHQL_JWT_SECRET": jwt_secret,
                    "GRAPHQL_PORT": str(api_port),
                    "GRAPHQL_HOST": "127.0.0.1",
                },
                workdir / "api.log",
                cpu=0,
            )
            baseline = ChildServer(
                "baseline",
                "bench.graphql_baseline",
                {**common, "BASELINE_PORT": str(baseline_port)},
                workdir / "baseline.log",
                cpu=0,
            )
            await api.start(f"http://127.0.0.1:{api_port}/readyz", session)
            await baseline.start(f"http://127.0.0.1:{baseline_port}/healthz", session)
            try:
                figures = await measure(
                    options, session, channel, metadata, api_port, baseline_port, jwt_secret
                )
            finally:
                api_exit, baseline_exit = await api.stop(), await baseline.stop()
            print(f"graphql_api exited with {api_exit} on SIGTERM; baseline with {baseline_exit}")
    report(figures, seed_seconds, load_before, options)


async def measure(
    options: argparse.Namespace,
    session: aiohttp.ClientSession,
    channel: grpc.aio.Channel,
    metadata: tuple[tuple[str, str], ...],
    api_port: int,
    baseline_port: int,
    jwt_secret: str,
) -> list[Figures]:
    token = issue_token(jwt_secret, subject="bench", role=Role.ADMIN, now=time.time(), lifetime_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    analytics = analytics_grpc.ViewerAnalyticsServiceStub(channel)
    settings = settings_grpc.AuctionSettingsServiceStub(channel)

    def graphql(query: str, variables: dict[str, str]) -> Probe:
        async def probe() -> Any:
            url = f"http://127.0.0.1:{api_port}/graphql"
            async with session.post(url, json={"query": query, "variables": variables}, headers=headers) as r:
                body = await r.json()
            if "errors" in body:
                raise RuntimeError(body["errors"])
            return body["data"]

        return probe

    def bare(path: str) -> Probe:
        async def probe() -> Any:
            async with session.get(f"http://127.0.0.1:{baseline_port}{path}") as response:
                response.raise_for_status()
                return await response.json()

        return probe

    def direct(*bucket_seconds: int) -> Probe:
        """The same gRPC calls straight from this client, one after the other."""

        async def probe() -> Any:
            for width in bucket_seconds:
                request = analytics_pb2.QueryViewerAnalyticsRequest(auction_id=AUCTION, bucket_seconds=width)
                response = await analytics.QueryViewerAnalytics(request, metadata=metadata)
            return len(response.points)

        return probe

    async def direct_settings() -> Any:
        return await settings.GetAuctionSettings(
            settings_pb2.GetAuctionSettingsRequest(auction_id=AUCTION), metadata=metadata
        )

    workloads: dict[str, dict[str, Probe]] = {
        "90 days, ALL + AUTO (6 h: 360 points; 2 gRPC calls)": {
            "graphql_api": graphql(ANALYTICS_QUERY, {"id": AUCTION, "bucket": "AUTO"}),
            "bare aiohttp": bare(f"/analytics/{AUCTION}?auto=1"),
            "gRPC only": direct(ONE_BUCKET_SECONDS, 21_600),
        },
        "90 days, ALL + HOUR (2,160 points; 1 gRPC call)": {
            "graphql_api": graphql(ANALYTICS_QUERY, {"id": AUCTION, "bucket": "HOUR"}),
            "bare aiohttp": bare(f"/analytics/{AUCTION}?bucket_seconds=3600"),
            "gRPC only": direct(3600),
        },
        "settings (1 gRPC call)": {
            "graphql_api": graphql(SETTINGS_QUERY, {"id": AUCTION}),
            "bare aiohttp": bare(f"/settings/{AUCTION}"),
            "gRPC only": direct_settings,
        },
    }
    # Check what each server answers before timing it.
    for name, probes in workloads.items():
        api_data = await probes["graphql_api"]()
        bare_data = await probes["bare aiohttp"]()
        if "settings" in name:
            assert api_data["auction"]["settings"] == bare_data["auction"]["settings"]
            continue
        api_result, bare_result = (
            api_data["auction"]["viewerAnalytics"],
            bare_data["auction"]["viewerAnalytics"],
        )
        # 90 days not aligned to the buckets touch one bucket more than they fill.
        assert len(api_result["points"]) in ((360, 361) if "AUTO" in name else (2160, 2161))
        assert api_result["summary"]["snapshotCount"] == NINETY_DAYS
        assert api_result["points"] == bare_result["points"]
    for _ in range(options.warm_up):
        for probes in workloads.values():
            for probe in probes.values():
                await probe()
    timings: dict[tuple[str, str], list[float]] = {}
    for round_number in range(options.rounds):
        for name, probes in workloads.items():
            servers = list(probes.items())
            # Rotate which server goes first, so drift over a round touches them alike.
            shift = round_number % len(servers)
            for server, probe in servers[shift:] + servers[:shift]:
                started = time.perf_counter()
                await probe()
                timings.setdefault((name, server), []).append(time.perf_counter() - started)
    return [
        Figures(
            workload=name,
            server=server,
            requests=len(values),
            p50_ms=percentile(values, 0.50) * 1000,
            p95_ms=percentile(values, 0.95) * 1000,
            mean_ms=statistics.fmean(values) * 1000,
        )
        for (name, server), values in timings.items()
    ]


def report(
    figures: list[Figures], seed_seconds: float, load_before: float, options: argparse.Namespace
) -> None:
    load_after = os.getloadavg()[0]
    print(f"\n1-minute load average: {load_before:.2f} before, {load_after:.2f} after (2 CPUs)")
    print(f"\n{'workload':54} {'server':13} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for row in figures:
        print(f"{row.workload:54} {row.server:13} {row.p50_ms:8.1f} {row.p95_ms:8.1f} {row.mean_ms:8.1f}")
    by_key = {(row.workload, row.server): row for row in figures}
    print("\nratios, graphql_api / bare aiohttp (same run):")
    for workload in dict.fromkeys(row.workload for row in figures):
        api, bare = by_key[(workload, "graphql_api")], by_key[(workload, "bare aiohttp")]
        print(f"  {workload:54} p50 {api.p50_ms / bare.p50_ms:5.2f}x  p95 {api.p95_ms / bare.p95_ms:5.2f}x")
        if workload.startswith("90 days"):
            verdict = "meets" if api.p95_ms <= GOAL_P95_SECONDS * 1000 else "misses"
            print(f"  {'':54} p95 {api.p95_ms:.0f} ms {verdict} the goal of {GOAL_P95_SECONDS * 1000:.0f} ms")
    if options.json:
        results = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "rounds": options.rounds,
            "seed_seconds": seed_seconds,
            "load_average": [load_before, load_after],
            "figures": [asdict(row) for row in figures],
        }
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(results, indent=2))
        print(f"\nwritten to {options.json}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.graphql_latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=40, help="timed requests per workload and server")
    parser.add_argument("--warm-up", type=int, default=3, help="untimed rounds first")
    parser.add_argument(
        "--json", default="", help="also write the figures to this file (e.g. bench/results/...)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
