"""End-to-end ingest throughput: snapshots/s through one stream (client → gRPC → store → acks).

Run from the repository root (figures and their meaning: docs/benchmarks.md, "Ingest service")::

    .venv/bin/python -m bench.ingest_throughput                   # SQLite, 5 repetitions
    .venv/bin/python -m bench.ingest_throughput --mongodb-uri mongodb://127.0.0.1:27017

Each run starts ``python -m ingest_service`` afresh (pinned to CPU 0 with ``taskset``) on a new
SQLite file in a temporary directory, or a new MongoDB database that is dropped afterwards, while
this process, the load client, pins itself to CPU 1. A run enables one auction, opens one stream,
sends one warm-up batch, then times sending every batch and reading its acknowledgements, one batch
at a time as a gateway does: it waits for a batch's acks before sending the next. Every ack must
say STORED, or the run fails. The workloads, interleaved within each repetition so that drift on
the machine touches them alike: batches of 1, batches of 500, and 90 days of one auction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import google.protobuf
import grpc
from pymongo import AsyncMongoClient
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2_grpc as ingest_grpc

from bench.ingest_process import IngestProcess
from service_common.internal_auth import internal_key_metadata
from testkit.measure import cpu_seconds
from testkit.seeding import minute_snapshots

INTERVAL_SECONDS = 60
RETENTION_DAYS = 90
# 90 days of one auction at one snapshot a minute.
NINETY_DAYS_OF_MINUTES = RETENTION_DAYS * 24 * 60

# The goals of issue 2.
GOAL_BATCHED_PER_SECOND = 30_000.0
GOAL_BATCHED_OVER_SINGLE = 10.0
GOAL_NINETY_DAYS_SECONDS = 5.0

_STORED = ingest_pb2.SNAPSHOT_OUTCOME_STORED


@dataclass(frozen=True)
class Workload:
    """``snapshots`` snapshots of one auction, consecutive minutes, sent ``batch_size`` per request."""

    name: str
    batch_size: int
    snapshots: int


@dataclass(frozen=True)
class Measurement:
    """One timed run: the wall time from the first request written to the last ack read.

    ``server_cpu_seconds`` and ``client_cpu_seconds`` cover the same span; a server well below one
    CPU-second per second is waiting (on the disk, or on the client), not computing.
    ``other_cpu_seconds`` is what the rest of the machine used meanwhile: the kernel's share of the
    run's own network and disk work (softirq, journal threads), and any other process. Well above
    what a quiet machine shows, other work shared the two CPUs and the run's figures are disturbed.
    ``started_quiet`` says whether the machine was quiet just before the run (None: not checked).
    """

    backend: str
    workload: str
    repetition: int
    batch_size: int
    snapshots: int
    seconds: float
    server_cpu_seconds: float
    client_cpu_seconds: float
    other_cpu_seconds: float
    started_quiet: bool | None = None

    @property
    def per_second(self) -> float:
        return self.snapshots / self.seconds


@dataclass(frozen=True)
class BenchOptions:
    """What to run; the defaults are the figures' settings in docs/benchmarks.md."""

    repetitions: int = 5
    single_snapshots: int = 2_000
    batched_snapshots: int = 60_000
    batch_size: int = 500
    load_snapshots: int = NINETY_DAYS_OF_MINUTES
    mongodb_uri: str | None = None
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    server_log_level: str = "warning"
    # The machine may be shared: before each run, wait up to this long for the other work to pause.
    quiet_wait_seconds: float = 120.0

    def workloads(self) -> list[Workload]:
        return [
            Workload("batches of 1", 1, self.single_snapshots),
            Workload(f"batches of {self.batch_size}", self.batch_size, self.batched_snapshots),
            Workload(_load_name(self.load_snapshots, self.batch_size), self.batch_size, self.load_snapshots),
        ]

    def backends(self) -> list[str]:
        return ["sqlite", "mongodb"] if self.mongodb_uri else ["sqlite"]


def _load_name(snapshots: int, batch_size: int) -> str:
    span = "90 days" if snapshots == NINETY_DAYS_OF_MINUTES else f"{snapshots:,} minutes"
    return f"{span} of one auction, batches of {batch_size}"


def build_requests(
    auction_id: str, last_minute: int, count: int, batch_size: int
) -> list[ingest_pb2.StreamSnapshotsRequest]:
    """``count`` valid snapshots of consecutive minutes ending at ``last_minute``, oldest first, batched.

    Built before the clock starts, so the measured span holds no message construction.
    """
    first_minute = last_minute - (count - 1) * INTERVAL_SECONDS
    snapshots = minute_snapshots(auction_id, first_minute, count, "bench-gateway")
    return [
        ingest_pb2.StreamSnapshotsRequest(snapshots=snapshots[start : start + batch_size])
        for start in range(0, count, batch_size)
    ]


def _machine_busy_seconds() -> float:
    """CPU time all CPUs have spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def wait_for_quiet_machine(timeout_seconds: float, busy_below: float = 0.1) -> bool:
    """Waits until the CPUs together were busy less than ``busy_below`` of one CPU for one second.

    Called between runs, when neither the service nor this client works, so what is busy is
    someone else. Returns False if that did not happen within ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        before = _machine_busy_seconds()
        await asyncio.sleep(1.0)
        if _machine_busy_seconds() - before < busy_below:
            return True
        if time.monotonic() >= deadline:
            return False


async def _stream_timed(
    channel: grpc.aio.Channel,
    metadata: Sequence[tuple[str, str]],
    warm_up: ingest_pb2.StreamSnapshotsRequest,
    requests: Sequence[ingest_pb2.StreamSnapshotsRequest],
    server_pid: int,
) -> tuple[float, float, float, float]:
    """Sends ``warm_up`` then, timed, each of ``requests`` on one stream, each after the previous ack.

    Returns:
        Wall seconds, and the CPU seconds of the server, this client and the rest of the machine
        during the timed part.
    """
    call = ingest_grpc.SnapshotIngestServiceStub(channel).StreamSnapshots(metadata=metadata)
    await call.write(warm_up)
    responses = [await call.read()]
    machine_busy_before = _machine_busy_seconds()
    server_cpu_before = cpu_seconds(server_pid)
    client_cpu_before = time.process_time()
    started = time.perf_counter()
    for request in requests:
        await call.write(request)
        responses.append(await call.read())
    seconds = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - server_cpu_before
    client_cpu = time.process_time() - client_cpu_before
    other_cpu = _machine_busy_seconds() - machine_busy_before - server_cpu - client_cpu
    await call.done_writing()
    if await call.read() is not grpc.aio.EOF:
        raise RuntimeError("the stream went on after the last acknowledgement")
    _check_all_stored([warm_up, *requests], responses)
    return seconds, server_cpu, client_cpu, other_cpu


def _check_all_stored(
    requests: Sequence[ingest_pb2.StreamSnapshotsRequest],
    responses: Sequence[ingest_pb2.StreamSnapshotsResponse],
) -> None:
    """Raises unless every snapshot sent was acknowledged STORED: anything else measures the wrong work."""
    sent = sum(len(request.snapshots) for request in requests)
    acks = [ack for response in responses for ack in response.acks]
    stored = sum(1 for ack in acks if ack.outcome == _STORED)
    if len(acks) != sent or stored != sent:
        first_other = next((ack for ack in acks if ack.outcome != _STORED), None)
        raise RuntimeError(
            f"{sent} snapshots sent, {len(acks)} acknowledged, {stored} stored; "
            f"first other ack: {first_other}"
        )


def with_database(uri: str, database: str) -> str:
    """``uri`` with its database (the path) replaced by ``database``, options kept."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def run_once(
    options: BenchOptions, backend: str, workload: Workload, repetition: int, workdir: Path
) -> Measurement:
    """One measured run on a fresh store and a freshly started ingest service."""
    key = secrets.token_urlsafe(32)
    settings = {
        "INTERNAL_API_KEY": key,
        "LOG_LEVEL": options.server_log_level,
        "LOG_FORMAT": "json",
        "VIEWER_ANALYTICS_RETENTION_DAYS": str(RETENTION_DAYS),
        "SNAPSHOT_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
        "SAMPLE_INTERVAL_SECONDS": "5",
    }
    run_name = f"{backend}-{repetition}-{workload.batch_size}-{workload.snapshots}-{secrets.token_hex(3)}"
    database: str | None = None
    if backend == "mongodb":
        assert options.mongodb_uri is not None
        database = f"bench_ingest_{secrets.token_hex(6)}"
        settings["MONGODB_URI"] = with_database(options.mongodb_uri, database)
    else:
        settings["ANALYTICS_SQLITE_PATH"] = str(workdir / f"{run_name}.sqlite3")

    auction_id = f"bench-auction-{secrets.token_hex(4)}"
    now_minute = int(time.time()) // INTERVAL_SECONDS * INTERVAL_SECONDS
    # The service accepts up to two intervals ahead of its clock and nothing older than the
    # retention: ending the range one interval ahead leaves 90 days of minutes at least one
    # interval inside the retention, and the warm-up two intervals ahead, outside the range.
    requests = build_requests(
        auction_id, now_minute + INTERVAL_SECONDS, workload.snapshots, workload.batch_size
    )
    warm_up = build_requests(auction_id, now_minute + 2 * INTERVAL_SECONDS, 1, 1)[0]
    metadata = internal_key_metadata(key)

    try:
        async with (
            IngestProcess(settings, workdir / f"{run_name}.log", options.server_cpu) as service,
            grpc.aio.insecure_channel(service.target) as channel,
        ):
            await settings_grpc.AuctionSettingsServiceStub(channel).SetViewerAnalytics(
                settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=True),
                metadata=metadata,
            )
            seconds, server_cpu, client_cpu, other_cpu = await _stream_timed(
                channel, metadata, warm_up, requests, service.pid
            )
    finally:
        if database is not None:
            assert options.mongodb_uri is not None
            await _drop_database(options.mongodb_uri, database)
    return Measurement(
        backend=backend,
        workload=workload.name,
        repetition=repetition,
        batch_size=workload.batch_size,
        snapshots=workload.snapshots,
        seconds=seconds,
        server_cpu_seconds=server_cpu,
        client_cpu_seconds=client_cpu,
        other_cpu_seconds=other_cpu,
    )


async def _drop_database(uri: str, database: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


async def mongodb_version(uri: str) -> str:
    """The MongoDB server's version.

    Raises:
        ValueError: the server is SecantusDB, a Python re-implementation for correctness tests whose
            figures would say nothing about MongoDB.
    """
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        build_info = await client.admin.command("buildInfo")
    finally:
        await client.close()
    if "secantusVersion" in build_info:
        raise ValueError(f"{uri} is SecantusDB {build_info['secantusVersion']}: never benchmark against it")
    return f"MongoDB {build_info.get('version', '(unknown version)')}"


async def run_benchmark(options: BenchOptions, progress: bool = False) -> list[Measurement]:
    """Every workload on every backend, ``options.repetitions`` times, interleaved per repetition.

    Raises:
        ValueError: the options ask for more than 90 days of one auction, or the MongoDB is SecantusDB.
    """
    if options.mongodb_uri:
        await mongodb_version(options.mongodb_uri)
    if not 1 <= options.load_snapshots <= NINETY_DAYS_OF_MINUTES:
        raise ValueError(
            f"at most {NINETY_DAYS_OF_MINUTES} snapshots (90 days of one auction) fit the retention"
        )
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
        for repetition in range(1, options.repetitions + 1):
            for backend in options.backends():
                for workload in options.workloads():
                    quiet = None
                    if options.quiet_wait_seconds > 0:
                        quiet = await wait_for_quiet_machine(options.quiet_wait_seconds)
                    measurement = await run_once(options, backend, workload, repetition, Path(workdir))
                    measurement = replace(measurement, started_quiet=quiet)
                    measurements.append(measurement)
                    if progress:
                        print(_progress_line(measurement), file=sys.stderr, flush=True)
    return measurements


def _cpu_shares(run: Measurement) -> tuple[float, float, float]:
    """CPU-seconds per second of the server, the client and the rest of the machine."""
    return (
        run.server_cpu_seconds / run.seconds,
        run.client_cpu_seconds / run.seconds,
        run.other_cpu_seconds / run.seconds,
    )


def _progress_line(run: Measurement) -> str:
    server, client, other = _cpu_shares(run)
    return (
        f"  rep {run.repetition} {run.backend:7} {run.workload:42} {run.snapshots:>7} "
        f"in {run.seconds:6.3f} s = {run.per_second:>7,.0f}/s  "
        f"CPU: server {server:.0%}, client {client:.0%}, other {other:.0%}"
        + ("  (the machine was busy when it started)" if run.started_quiet is False else "")
    )


def _median_row(runs: Sequence[Measurement]) -> str:
    rates = [run.per_second for run in runs]
    seconds = [run.seconds for run in runs]
    shares = [_cpu_shares(run) for run in runs]
    loads = [statistics.median(share[index] for share in shares) for index in range(3)]
    return (
        f"| {runs[0].workload} | {runs[0].snapshots:,} | {statistics.median(seconds):.3f} s "
        f"| **{statistics.median(rates):,.0f}** | {min(rates):,.0f} to {max(rates):,.0f} | "
        + " | ".join(f"{load:.0%}" for load in loads)
        + " |"
    )


def summarize(options: BenchOptions, measurements: Sequence[Measurement]) -> str:
    """The results as Markdown: medians and ranges per backend, the ratio, and the goals."""
    lines: list[str] = []
    single, batched, load = options.workloads()
    for backend in options.backends():
        runs = [run for run in measurements if run.backend == backend]
        by_workload = {
            workload.name: [run for run in runs if run.workload == workload.name]
            for workload in (single, batched, load)
        }
        repetitions = len(by_workload[single.name])
        lines += [
            f"**{backend}** — median of {repetitions} repetitions (each run: a fresh service and store)",
            "",
            "| workload | snapshots | time | snapshots/s | range (snapshots/s) "
            "| CPU: server | client | other |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *(_median_row(by_workload[workload.name]) for workload in (single, batched, load)),
            "",
        ]
        checked = [run for run in runs if run.started_quiet is not None]
        if checked:
            quiet = sum(1 for run in checked if run.started_quiet)
            lines += [f"- runs that started on a quiet machine: {quiet} of {len(checked)}"]
        ratios = [
            b.per_second / s.per_second
            for s, b in zip(by_workload[single.name], by_workload[batched.name], strict=True)
        ]
        batched_rate = statistics.median(run.per_second for run in by_workload[batched.name])
        ratio = statistics.median(ratios)
        load_seconds = statistics.median(run.seconds for run in by_workload[load.name])
        lines += [
            f"- {batched.name} vs batches of 1, same repetition: **{ratio:.1f}x** (median; per repetition: "
            + ", ".join(f"{value:.1f}x" for value in ratios)
            + ")",
            f"- goal ≥ {GOAL_BATCHED_PER_SECOND:,.0f} snapshots/s batched: {batched_rate:,.0f} — "
            + _verdict(batched_rate >= GOAL_BATCHED_PER_SECOND),
            f"- goal ≥ {GOAL_BATCHED_OVER_SINGLE:.0f}x batches of 1: {ratio:.1f}x — "
            + _verdict(ratio >= GOAL_BATCHED_OVER_SINGLE),
            f"- goal 90 days ({NINETY_DAYS_OF_MINUTES:,} snapshots) in < {GOAL_NINETY_DAYS_SECONDS:.0f} s: "
            + (
                f"{load_seconds:.2f} s — " + _verdict(load_seconds < GOAL_NINETY_DAYS_SECONDS)
                if load.snapshots == NINETY_DAYS_OF_MINUTES
                else f"not measured ({load.name}: {load_seconds:.2f} s)"
            ),
            "",
        ]
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def code_version() -> str:
    """The repository's commit, noting uncommitted changes to the service's code."""
    repository = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repository)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--", "ingest_service", "service_common", "generated"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes to the service" if changes else "")


def machine_facts(code: str, mongodb: str | None = None) -> str:
    """What the figures were measured on, as Markdown list items.

    Args:
        code: the code measured (see :func:`code_version`).
        mongodb: the MongoDB server's version, when MongoDB was measured.
    """
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "\n".join(
        [
            f"- {os.cpu_count()} x {cpu}; {platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}, grpcio {grpc.__version__}, "
            f"protobuf {google.protobuf.__version__}, SQLite {sqlite3.sqlite_version}",
            f"- temporary directory (the SQLite files): {tempfile.gettempdir()}",
            f"- code: commit {code}",
            *([f"- {mongodb}"] if mongodb else []),
        ]
    )


def pin_this_process(cpu: int) -> None:
    """Pins every thread of this process (gRPC's included) to ``cpu``; threads started later inherit it."""
    for task in Path("/proc/self/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def _parse_args(argv: Sequence[str] | None) -> tuple[BenchOptions, Path | None]:
    defaults = BenchOptions()
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repetitions", type=int, default=defaults.repetitions)
    parser.add_argument(
        "--single-snapshots",
        type=int,
        default=defaults.single_snapshots,
        help="snapshots sent in batches of 1",
    )
    parser.add_argument(
        "--batched-snapshots",
        type=int,
        default=defaults.batched_snapshots,
        help="snapshots sent in full batches",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--load-snapshots",
        type=int,
        default=defaults.load_snapshots,
        help="size of the '90 days' load (default: 90 days of minutes)",
    )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("TEST_MONGODB_URI") or None,
        help="also measure on this MongoDB (default: $TEST_MONGODB_URI); never SecantusDB",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the service to CPU 0 and this client to CPU 1"
    )
    parser.add_argument(
        "--server-log-level", default=defaults.server_log_level, choices=("debug", "info", "warning", "error")
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=defaults.quiet_wait_seconds,
        help="before each run, wait up to this long (seconds) for other work on the machine to pause (0: no)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    pinned = not args.no_pin
    options = BenchOptions(
        repetitions=args.repetitions,
        single_snapshots=args.single_snapshots,
        batched_snapshots=args.batched_snapshots,
        batch_size=args.batch_size,
        load_snapshots=args.load_snapshots,
        mongodb_uri=args.mongodb_uri,
        server_cpu=defaults.server_cpu if pinned else None,
        client_cpu=defaults.client_cpu if pinned else None,
        server_log_level=args.server_log_level,
        quiet_wait_seconds=args.quiet_wait,
    )
    return options, args.json


def main(argv: Sequence[str] | None = None) -> None:
    options, json_path = _parse_args(argv)
    if options.client_cpu is not None:
        pin_this_process(options.client_cpu)
    command = " ".join(["python -m bench.ingest_throughput", *(argv if argv is not None else sys.argv[1:])])
    code_at_start = code_version()
    try:
        measurements = asyncio.run(run_benchmark(options, progress=True))
    except ValueError as error:
        sys.exit(f"bench.ingest_throughput: {error}")
    mongodb = asyncio.run(mongodb_version(options.mongodb_uri)) if options.mongodb_uri else None
    print(f"Command: `{command}`\n")
    code = code_version()
    if code != code_at_start:
        # Others commit to the same checkout: a run that straddles a change measured two versions.
        code = f"{code_at_start} at the start, {code} at the end"
    print(machine_facts(code, mongodb) + "\n")
    print(summarize(options, measurements))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps([asdict(run) for run in measurements], indent=2) + "\n")


if __name__ == "__main__":
    main()
