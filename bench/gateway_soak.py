"""Soak: one socket gateway under steady viewers and churn for a long run, its RSS sampled throughout.

Starts ``python -m ingest_service`` (SQLite in a temporary directory, analytics enabled for every
room) and ``python -m socket_gateway`` with the real 60 s / 5 s timing, the gateway pinned to CPU 0
and this client and the ingest service to CPU 1 when ``taskset`` is there. Then ``--steady`` viewers
and one observer per room stay connected while ``--rate`` connections per second join a room (at
connect, ``auth.auctionId``), wait for their first count, send ``leaveAuction`` and close.

Every ``--sample-every`` seconds the gateway's RSS (``/proc/<pid>/status``), CPU time and a few
of its gauges are recorded, and once more after the churn has settled. Reported: the series, RSS at
start and end, the least-squares slope of RSS over the later half of the samples (KiB/min; the
first half includes the allocator's warm-up), operations done and failed, whether every room's final
count and ``gateway_room_members`` are the expected ones, the snapshots enqueued and acknowledged,
and the load average. Loopback only. ``--duration 3 --sample-every 1`` is the smoke test's run.

    .venv/bin/python -m bench.gateway_soak --duration 600 --json bench/results/gateway_soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import grpc
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc

from bench.ingest_process import IngestProcess
from service_common.internal_auth import internal_key_metadata
from socket_gateway.metrics import parse_samples
from testkit.measure import cpu_seconds, rss_kib
from testkit.processes import ServiceProcess

KEY = "bench-internal-key-0123456789"
WAIT = 10.0
COUNT_PREFIX = '42["viewerCountUpdate",'


@dataclass
class Sample:
    seconds: float
    rss_kib: int
    cpu_seconds: float
    room_members: float
    outbox_depth: float


@dataclass
class SoakResult:
    duration_seconds: float
    rate: float
    rooms: int
    steady: int
    operations: int
    failures: int
    first_failures: list[str]
    final_counts_exact: bool
    room_members_metric: float
    room_members_expected: int
    snapshots_enqueued: float
    snapshots_acked: float
    outbox_depth_end: float
    rss_start_kib: int
    rss_end_kib: int
    rss_slope_second_half_kib_per_min: float | None
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]
    samples: list[Sample] = field(default_factory=list)


class SoakSocket:
    """A raw Engine.IO 4 / Socket.IO 5 WebSocket: answers pings, hands count updates to ``on_count``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_count: Callable[[int], None]) -> None:
        self.ws = ws
        self._on_count = on_count
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, url: str, room: str, on_count: Callable[[int], None]
    ) -> SoakSocket:
        ws = await http.ws_connect(
            f"{url}/socket.io/?EIO=4&transport=websocket", timeout=aiohttp.ClientWSTimeout(ws_close=1.0)
        )
        try:
            if not (await ws.receive_str(timeout=WAIT)).startswith("0{"):
                raise ConnectionError("no Engine.IO open packet")
            await ws.send_str("40" + json.dumps({"auctionId": room}))
            if not (await ws.receive_str(timeout=WAIT)).startswith("40{"):
                raise ConnectionError("Socket.IO connect refused")
        except BaseException:
            await ws.close()
            raise
        return cls(ws, on_count)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame: str = message.data
            if frame == "2":
                await self.ws.send_str("3")
            elif frame.startswith(COUNT_PREFIX):
                self._on_count(int(json.loads(frame[2:])[1]["viewerCount"]))

    async def leave_and_close(self) -> None:
        await self.ws.send_str('42["leaveAuction"]')
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, value)`` points, per minute; None for fewer than two."""
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


async def gateway_metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    return parse_samples(await (await http.get(f"{url}/metrics")).text())


async def start_gateway(workdir: Path, ingest_target: str, pin: bool) -> tuple[ServiceProcess, int]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OUTBOX_", "INGEST_"))},
        "INTERNAL_API_KEY": KEY,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        "INGEST_TARGET": ingest_target,
        "OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "ALLOWED_ORIGIN": "*",
        "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE": "1000000",
        # Every load client connects from 127.0.0.1: no cap on open connections per address.
        "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    gateway = await ServiceProcess.start("socket_gateway", env, cpus="0" if pin else None)
    try:
        port = await gateway.listening_port("Socket gateway listening")
    except BaseException:
        await gateway.kill()
        raise
    return gateway, port


async def enable_analytics(target: str, rooms: list[str]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = settings_grpc.AuctionSettingsServiceStub(channel)
        for room in rooms:
            await stub.SetViewerAnalytics(
                settings_pb2.SetViewerAnalyticsRequest(auction_id=room, enabled=True),
                metadata=internal_key_metadata(KEY),
            )


async def soak(
    duration: float,
    rate: float,
    rooms_count: int,
    steady_count: int,
    sample_every: float,
    *,
    pin: bool = True,
) -> SoakResult:
    """Runs the soak and returns its figures; see the module docstring.

    Args:
        pin: pin the gateway to CPU 0, and this process and the ingest service to CPU 1, when
            ``taskset`` and two CPUs are there (the smoke test leaves its own process alone).
    """
    pin = pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    rooms = [f"soak-{n}" for n in range(rooms_count)]
    ingest_settings = {
        "INTERNAL_API_KEY": KEY,
        "ANALYTICS_SQLITE_PATH": str(workdir / "analytics.sqlite3"),
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
    }
    async with IngestProcess(ingest_settings, workdir / "ingest.log", 1 if pin else None) as ingest:
        await enable_analytics(ingest.target, rooms)
        gateway, port = await start_gateway(workdir, ingest.target, pin)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                return await drive(
                    http, url, gateway.process.pid, duration, rate, rooms, steady_count, sample_every
                )
        finally:
            await gateway.stop()
            shutil.rmtree(workdir, ignore_errors=True)


async def drive(
    http: aiohttp.ClientSession,
    url: str,
    pid: int,
    duration: float,
    rate: float,
    rooms: list[str],
    steady_count: int,
    sample_every: float,
) -> SoakResult:
    last_count: dict[str, int] = {}

    def recorder(room: str) -> Callable[[int], None]:
        return lambda count: last_count.__setitem__(room, count)

    observers = [await SoakSocket.open(http, url, room, recorder(room)) for room in rooms]
    steady = [
        await SoakSocket.open(http, url, rooms[n % len(rooms)], lambda _count: None)
        for n in range(steady_count)
    ]
    load_start = os.getloadavg()
    started = time.monotonic()
    samples: list[Sample] = []

    async def sample() -> None:
        values = await gateway_metrics(http, url)
        samples.append(
            Sample(
                seconds=round(time.monotonic() - started, 1),
                rss_kib=rss_kib(pid),
                cpu_seconds=round(cpu_seconds(pid), 2),
                room_members=values["gateway_room_members"],
                outbox_depth=values["gateway_outbox_depth"],
            )
        )

    async def sampler() -> None:
        while True:
            await sample()
            await asyncio.sleep(max(0.0, started + len(samples) * sample_every - time.monotonic()))

    failures: list[str] = []
    done = 0

    async def operation(n: int) -> None:
        nonlocal done
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def first_count(_count: int) -> None:
            if not heard.done():
                heard.set_result(None)

        try:
            sock = await SoakSocket.open(http, url, rooms[n % len(rooms)], first_count)
            try:
                await asyncio.wait_for(heard, WAIT)
            finally:
                await sock.leave_and_close()
            done += 1
        except (OSError, TimeoutError, ConnectionError, aiohttp.ClientError) as error:
            failures.append(repr(error))

    sampling = asyncio.create_task(sampler())
    tasks: set[asyncio.Task[None]] = set()
    for n in range(int(rate * duration)):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        task = asyncio.create_task(operation(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    await asyncio.sleep(max(0.0, started + duration - time.monotonic()))
    sampling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampling
    # The counts settle within a coalescing interval (500 ms) once the churn stops.
    await asyncio.sleep(1.5)
    await sample()
    values = await gateway_metrics(http, url)
    expected = {
        room: 1 + sum(1 for n in range(steady_count) if n % len(rooms) == i) for i, room in enumerate(rooms)
    }
    await asyncio.gather(*(sock.close() for sock in [*steady, *observers]))
    later_half = samples[len(samples) // 2 :]
    return SoakResult(
        duration_seconds=round(time.monotonic() - started, 1),
        rate=rate,
        rooms=len(rooms),
        steady=steady_count,
        operations=done,
        failures=len(failures),
        first_failures=failures[:5],
        final_counts_exact=last_count == expected,
        room_members_metric=values["gateway_room_members"],
        room_members_expected=len(rooms) + steady_count,
        snapshots_enqueued=values["gateway_snapshots_enqueued_total"],
        snapshots_acked=sum(v for k, v in values.items() if k.startswith("gateway_snapshots_acked_total")),
        outbox_depth_end=values["gateway_outbox_depth"],
        rss_start_kib=samples[0].rss_kib,
        rss_end_kib=samples[-1].rss_kib,
        rss_slope_second_half_kib_per_min=(
            None
            if (slope := slope_per_minute([(s.seconds, s.rss_kib) for s in later_half])) is None
            else round(slope, 1)
        ),
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        samples=samples,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of churn (default 600)")
    parser.add_argument("--rate", type=float, default=20.0, help="connect+join+leave per second")
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--steady", type=int, default=200, help="viewers connected for the whole run")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(soak(args.duration, args.rate, args.rooms, args.steady, args.sample_every))
    text = json.dumps(asdict(result), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
