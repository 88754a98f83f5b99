"""Load and soak run against one socket gateway: connect+join+leave churn with steady viewers.

Starts ``python -m socket_gateway`` on a free loopback port (pinned to CPU 0 when ``taskset`` is
there), then from this process (CPU 1) opens ``--rate`` connections per second for ``--seconds``,
each joining a room at connect (``auth.auctionId``), waiting for its first count, and leaving.
``--steady`` viewers stay connected throughout, and one observer per room records every
``viewerCountUpdate``. Reports: operations done and failed, p50/p99 of the time from a join being
sent to the room's observer receiving the next count update, the rooms' final counts against the
expected ones (the steady viewers), and the gateway's RSS at start and end. Loopback only.

    .venv/bin/python -m bench.gateway_load --rate 500 --seconds 60
    .venv/bin/python -m bench.gateway_load --rate 20 --seconds 600 --steady 200   # the soak
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.lean_socketio import LeanSocket
from testkit.measure import cpu_seconds, rss_kib
from testkit.processes import ServiceProcess
from testkit.stats import percentile

KEY = "bench-internal-key-0123456789"


@dataclass
class Observer:
    updates: list[tuple[float, int]] = field(default_factory=list)


def viewer_count(frame: bytes) -> int:
    payload: dict[str, Any] = json.loads(frame[2:])[1]
    return int(payload["viewerCount"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    env = {
        **os.environ,
        "INTERNAL_API_KEY": KEY,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        "INGEST_TARGET": "127.0.0.1:1",
        "OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "ALLOWED_ORIGIN": "*",
        "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE": "1000000",
        # Every load client connects from 127.0.0.1: no cap on open connections per address.
        "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
    }
    pin = shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {1})
    env["LOG_LEVEL"] = "info"
    gateway = await ServiceProcess.start(args.gateway_module, env, cpus="0" if pin else None)
    port = await gateway.listening_port("Socket gateway listening")
    process = gateway.process
    url = f"http://127.0.0.1:{port}"
    rooms = [f"load-{n}" for n in range(args.rooms)]
    latencies: list[float] = []
    own_latencies: list[float] = []
    folded = 0
    failures: list[str] = []
    done = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        observers = {room: Observer() for room in rooms}

        def recorder(observer: Observer) -> Callable[[bytes], None]:
            return lambda frame: observer.updates.append((time.monotonic(), viewer_count(frame)))

        observer_sockets = [
            await LeanSocket.open(url, {"auctionId": room}, recorder(observers[room])) for room in rooms
        ]
        steady = [
            await LeanSocket.open(url, {"auctionId": rooms[n % len(rooms)]}) for n in range(args.steady)
        ]
        await asyncio.sleep(1.0)
        rss_start = rss_kib(process.pid)
        cpu_start = cpu_seconds(process.pid)
        joins: list[tuple[float, str]] = []

        async def operation(n: int) -> None:
            nonlocal done
            room = rooms[n % len(rooms)]
            first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def heard(_frame: bytes) -> None:
                if not first.done():
                    first.set_result(None)

            try:
                sent = time.monotonic()
                joins.append((sent, room))
                sock = await LeanSocket.open(url, {"auctionId": room}, heard)
                await asyncio.wait_for(first, 10)
                own_latencies.append(time.monotonic() - sent)
                sock.emit("leaveAuction")
                await sock.close()
                done += 1
            except (OSError, TimeoutError) as error:
                failures.append(repr(error))

        started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        total = int(args.rate * args.seconds)
        for n in range(total):
            await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
            task = asyncio.create_task(operation(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        cpu_churn = cpu_seconds(process.pid) - cpu_start
        await asyncio.sleep(args.settle)
        rss_end = rss_kib(process.pid)
        folded = 0
        for sent, room in joins:
            times = [t for t, _ in observers[room].updates]
            index = bisect.bisect_left(times, sent)
            if index < len(times):
                latencies.append(times[index] - sent)
            else:
                # Joined and left within one coalescing interval: the room's count did not change,
                # so no update is due (docs/socket_gateway.md); the joiner saw its count at once.
                folded += 1
        expected = {
            room: 1 + sum(1 for n in range(args.steady) if rooms[n % len(rooms)] == room) for room in rooms
        }
        final = {room: observers[room].updates[-1][1] for room in rooms}
        metrics_text = await (await http.get(f"{url}/metrics")).text()
        members = next(
            float(line.split()[1])
            for line in metrics_text.splitlines()
            if line.startswith("gateway_room_members ")
        )
        await asyncio.gather(*(sock.close() for sock in [*steady, *observer_sockets]))
    await gateway.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "achieved_per_second": round(done / elapsed, 1),
        "operations": done,
        "server_cpu_seconds": round(cpu_churn, 2),
        "server_cpu_ms_per_operation": round(cpu_churn / max(done, 1) * 1000, 3),
        "failures": len(failures),
        "first_failures": failures[:5],
        "join_to_own_count_p50_ms": round(percentile(own_latencies, 0.50) * 1000, 1)
        if own_latencies
        else None,
        "join_to_own_count_p99_ms": round(percentile(own_latencies, 0.99) * 1000, 1)
        if own_latencies
        else None,
        "joins_folded_without_room_update": folded,
        "join_to_update_p50_ms": round(percentile(latencies, 0.50) * 1000, 1) if latencies else None,
        "join_to_update_p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "join_to_update_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "final_counts_exact": final == expected,
        "room_members_metric": members,
        "room_members_expected": len(rooms) + args.steady,
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="connect+join+leave per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--steady", type=int, default=100, help="viewers connected for the whole run")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="wait after the churn before reading counts"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--gateway-module", default="socket_gateway", help="what `python -m` runs")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
