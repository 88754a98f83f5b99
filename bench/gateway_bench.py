"""Socket gateway benchmarks: fan-out cost against Node socket.io, join storm, capacity.

Run from the repository root (figures and their meaning: docs/benchmarks.md, "Socket gateway")::

    npm ci --prefix bench/gateway_node                      # once: the Node baseline's socket.io
    .venv/bin/python -m bench.gateway_bench fanout          # 1k and 5k sockets, ours and Node's
    .venv/bin/python -m bench.gateway_bench storm           # 5k joins within 10 s
    .venv/bin/python -m bench.gateway_bench capacity        # sockets held and RSS

The server under test (``python -m socket_gateway`` as shipped, or ``node bench/gateway_node/server.js``)
runs pinned to CPU 0 with ``taskset``; this process, the load client, pins itself to CPU 1. The load
client is lean on purpose: raw Engine.IO/Socket.IO v4 frames over aiohttp WebSockets, no
python-socketio, counting frames without decoding them, so that it is not the bottleneck.

Fan-out: N sockets sit in one room; a toggler socket joins and leaves it, one toggle per round, and
the next round starts only when every one of the N sockets has received that round's
``viewerCountUpdate``. The server's CPU time (utime + stime from /proc) over the rounds divided by
the N x rounds messages delivered is the cost per delivered message. Ours runs with
``COUNT_UPDATE_INTERVAL_MS=10`` so coalescing never merges two rounds; each round is one change.

Only loopback addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.lean_socketio import LeanSocket
from testkit.measure import cpu_seconds, rss_kib
from testkit.processes import port_from_log, spawn

REPO = Path(__file__).resolve().parents[1]
NODE_SERVER = REPO / "bench" / "gateway_node" / "server.js"
SERVER_CPU = "0"
CLIENT_CPU = 1
# Every wait is bounded: a benchmark that stalls fails instead of hanging.
STEP_TIMEOUT = 120.0

# The goals of issue 3.
GOAL_MICROSECONDS_PER_MESSAGE = 40.0
GOAL_EFFICIENCY_VS_NODE = 0.55
GOAL_STORM_REDUCTION = 100.0
GOAL_CAPACITY_SOCKETS = 20_000
GOAL_CAPACITY_RSS_MB = 800.0


class ServerProcess:
    """The server under test, pinned to its own core, with CPU and memory read from /proc."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, drain: asyncio.Task[None]) -> None:
        self.process = process
        self.port = port
        self._drain = drain

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss_bytes(self) -> int:
        return rss_kib(self.process.pid) * 1024

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    async for _ in stream:
        pass


@contextlib.asynccontextmanager
async def gateway_server(
    count_update_interval_ms: int,
    workdir: Path,
    python: str = sys.executable,
    module: str = "socket_gateway",
    extra_env: dict[str, str] | None = None,
    cpus: str = SERVER_CPU,
) -> AsyncIterator[ServerProcess]:
    env = {
        **os.environ,
        # Another interpreter (--gateway-python) finds the project's packages from the work tree.
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "generated")]),
        "INTERNAL_API_KEY": secrets.token_urlsafe(24),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        # No ingest service: the sender's retries (backoff up to 30 s) cost nothing measurable.
        "INGEST_TARGET": "127.0.0.1:1",
        "GATEWAY_SHUTDOWN_FLUSH_SECONDS": "0",
        "OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "ALLOWED_ORIGIN": "*",
        "COUNT_UPDATE_INTERVAL_MS": str(count_update_interval_ms),
        "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE": "1000000",
        # Every load client connects from 127.0.0.1: no cap on open connections per address.
        "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "GATEWAY_PING_INTERVAL_SECONDS": "300",
        "GATEWAY_PING_TIMEOUT_SECONDS": "300",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        **(extra_env or {}),
    }
    process = await spawn(module, env, stderr=asyncio.subprocess.PIPE, cpus=cpus, python=python)
    assert process.stderr is not None
    port = await port_from_log(process.stderr, "Socket gateway listening")
    server = ServerProcess(process, port, asyncio.create_task(_drain(process.stderr)))
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def node_server() -> AsyncIterator[ServerProcess]:
    process = await asyncio.create_subprocess_exec(
        "taskset", "-c", SERVER_CPU, "node", str(NODE_SERVER),
        env={**os.environ, "SILENT_CONNECT_JOINS": "1"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    server = ServerProcess(
        process, int(json.loads(line)["port"]), asyncio.create_task(_drain(process.stdout))
    )
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Tally:
    """viewerCountUpdate frames received by a group of sockets, and a way to wait for a total."""

    received: int = 0
    target: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def on_update(self, _frame: bytes) -> None:
        self.received += 1
        if self.received >= self.target:
            self.reached.set()

    async def wait_for(self, total: int) -> None:
        self.target = total
        if self.received >= total:
            return
        self.reached.clear()
        await asyncio.wait_for(self.reached.wait(), STEP_TIMEOUT)


async def open_many(
    url: str,
    count: int,
    auth_of: Callable[[int], dict[str, str]],
    tally: Tally | None,
    concurrency: int = 50,
    per_second: float | None = None,
    deadline_seconds: float = STEP_TIMEOUT * 2,
) -> list[LeanSocket]:
    """Opens ``count`` sockets, ``concurrency`` at a time, optionally paced to ``per_second``."""
    sockets: list[LeanSocket] = []
    gate = asyncio.Semaphore(concurrency)
    start = time.monotonic()

    async def one(index: int) -> None:
        if per_second:
            delay = start + index / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        async with gate:
            on_update = None if tally is None else tally.on_update
            sockets.append(await LeanSocket.open(url, auth_of(index), on_update))

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), deadline_seconds)
    return sockets


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))


async def measure_fanout(server: ServerProcess, sockets: int, rounds: int) -> dict[str, float]:
    """CPU µs per delivered update with ``sockets`` in one room, over ``rounds`` toggles."""
    tally = Tally()
    members = await open_many(server.url, sockets, lambda _: {"auctionId": "bench"}, tally)
    toggler = await LeanSocket.open(server.url)
    # Settle: the join storm's updates are still arriving; wait until a fresh change reaches all.
    await toggler.call("joinAuction", {"auctionId": "bench"})
    await toggler.call("leaveAuction")
    # Let that pair's trailing update go out: a join landing while it is still pending would
    # bring the room back to the count last sent, and the gateway rightly sends nothing then.
    await asyncio.sleep(0.3)
    settle_deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        before = tally.received
        await toggler.call("joinAuction", {"auctionId": "bench"})
        await tally.wait_for(before + sockets)
        await toggler.call("leaveAuction")
        await tally.wait_for(before + 2 * sockets)
        await asyncio.sleep(0.3)  # quiet period: nothing else may be in flight
        if tally.received == before + 2 * sockets or time.monotonic() > settle_deadline:
            break
    base = tally.received
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    for round_index in range(rounds):
        await toggler.call("leaveAuction" if round_index % 2 else "joinAuction", {"auctionId": "bench"})
        await tally.wait_for(base + (round_index + 1) * sockets)
    cpu = server.cpu_seconds() - cpu_before
    wall = time.monotonic() - wall_before
    delivered = tally.received - base
    await asyncio.gather(*(member.close() for member in members), toggler.close())
    return {
        "sockets": sockets,
        "rounds": rounds,
        "delivered": delivered,
        "server_cpu_s": cpu,
        "wall_s": wall,
        "us_per_message": cpu / delivered * 1e6,
    }


async def fanout(repetitions: int, python: str, module: str) -> None:
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    plan = [(1_000, 100), (5_000, 30)]
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir:
        for repetition in range(repetitions):
            for sockets, rounds in plan:
                # Interleaved, so drift on the machine touches both servers alike.
                for kind in ("gateway", "node"):
                    server_context = (
                        gateway_server(10, Path(workdir) / f"{repetition}-{sockets}", python, module)
                        if kind == "gateway"
                        else node_server()
                    )
                    async with server_context as server:
                        result = await measure_fanout(server, sockets, rounds)
                    results.setdefault((kind, sockets), []).append(result)
                    print(json.dumps({"kind": kind, **result}), flush=True)
    print()
    print("| sockets in the room | gateway µs/message | Node µs/message | gateway efficiency vs Node |")
    print("|---|---|---|---|")
    for sockets, _ in plan:
        ours = statistics.median(r["us_per_message"] for r in results[("gateway", sockets)])
        node = statistics.median(r["us_per_message"] for r in results[("node", sockets)])
        print(f"| {sockets:,} | {ours:.1f} | {node:.1f} | {node / ours:.2f}x |")
    print(
        f"\ngoals: <= {GOAL_MICROSECONDS_PER_MESSAGE} µs/message, "
        f">= {GOAL_EFFICIENCY_VS_NODE}x Node's efficiency"
    )


async def storm(sockets: int, seconds: float, python: str) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir:
        async with gateway_server(500, Path(workdir), python) as server:
            cpu_before = server.cpu_seconds()
            started = time.monotonic()
            members = await open_many(
                server.url, sockets, lambda _: {"auctionId": "storm"}, tally,
                per_second=sockets / seconds,
            )  # fmt: skip
            joined = time.monotonic() - started
            # Settled when a probe that joins last sees the full room and no more updates arrive.
            probe_tally = Tally()
            probe = await LeanSocket.open(server.url, {"auctionId": "storm"}, probe_tally.on_update)
            await probe_tally.wait_for(1)
            previous = -1
            while previous != tally.received:
                previous = tally.received
                await asyncio.sleep(1.5)  # three coalescing intervals without a new update: settled
            cpu = server.cpu_seconds() - cpu_before
            await asyncio.gather(*(member.close() for member in members), probe.close())
    seed = sockets * (sockets + 1) // 2
    print(
        json.dumps(
            {
                "sockets": sockets,
                "join_seconds": round(joined, 2),
                "messages_received": tally.received,
                "seed_broadcast_per_join_messages": seed,
                "reduction": round(seed / tally.received, 1),
                "server_cpu_s": round(cpu, 2),
            }
        )
    )
    print(f"goal: >= {GOAL_STORM_REDUCTION}x fewer messages than the seed's broadcast per join")


async def hold(url: str, count: int, rooms: int) -> None:
    """Child mode for ``capacity``: holds ``count`` sockets until stdin closes."""
    members = await open_many(
        url,
        count,
        lambda i: {"auctionId": f"room-{i % rooms}"},
        None,
        deadline_seconds=STEP_TIMEOUT * 8,
    )
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(member.close() for member in members))


async def capacity(sockets: int, clients: int, rooms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir:
        async with gateway_server(500, Path(workdir)) as server:
            idle_rss = server.rss_bytes()
            started = time.monotonic()
            children = []
            for _ in range(clients):
                child = await asyncio.create_subprocess_exec(
                    "taskset", "-c", str(CLIENT_CPU), sys.executable, "-m", "bench.gateway_bench", "hold",
                    "--url", server.url, "--count", str(sockets // clients), "--rooms", str(rooms // clients),
                    cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                children.append(child)
            for child in children:
                assert child.stdout is not None
                line = await asyncio.wait_for(child.stdout.readline(), STEP_TIMEOUT * 9)
                assert line.strip() == b"ready", line
            connected = time.monotonic() - started
            async with aiohttp.ClientSession() as http:
                metrics = await (await http.get(f"{server.url}/metrics")).text()
            held = next(
                float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("gateway_connections ")
            )
            rss = server.rss_bytes()
            for child in children:
                assert child.stdin is not None
                child.stdin.close()
                await child.wait()
    per_socket = (rss - idle_rss) / held
    print(
        json.dumps(
            {
                "sockets_held": int(held),
                "rooms": rooms,
                "connect_seconds": round(connected, 1),
                "rss_idle_mb": round(idle_rss / 2**20, 1),
                "rss_mb": round(rss / 2**20, 1),
                "kb_per_socket": round(per_socket / 1024, 1),
                "rss_at_20k_mb_extrapolated": round(
                    (idle_rss + per_socket * GOAL_CAPACITY_SOCKETS) / 2**20, 1
                ),
            }
        )
    )
    print(f"goal: {GOAL_CAPACITY_SOCKETS:,} sockets <= {GOAL_CAPACITY_RSS_MB:.0f} MB")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fan = commands.add_parser("fanout")
    fan.add_argument("--repetitions", type=int, default=3)
    fan.add_argument("--gateway-python", default=sys.executable, help="interpreter that runs the gateway")
    fan.add_argument(
        "--gateway-module", default="socket_gateway", help="what `python -m` runs as the gateway"
    )
    jam = commands.add_parser("storm")
    jam.add_argument("--sockets", type=int, default=5_000)
    jam.add_argument("--seconds", type=float, default=10.0)
    jam.add_argument("--gateway-python", default=sys.executable, help="interpreter that runs the gateway")
    cap = commands.add_parser("capacity")
    # The sandbox caps open files at 20,000 per process, so one process cannot hold 20,000 sockets
    # plus its own files; 19,900 is measured and the RSS at 20,000 extrapolated per socket.
    cap.add_argument("--sockets", type=int, default=19_900)
    cap.add_argument("--clients", type=int, default=2)
    # Ten viewers a room: while 20k sockets connect, bigger rooms keep the server busy with the
    # coalesced updates of the ramp (every join changes a count) rather than with holding sockets.
    cap.add_argument("--rooms", type=int, default=2_000)
    child = commands.add_parser("hold")
    child.add_argument("--url", required=True)
    child.add_argument("--count", type=int, required=True)
    child.add_argument("--rooms", type=int, required=True)
    args = parser.parse_args(argv)

    if args.command != "hold":
        os.sched_setaffinity(0, {CLIENT_CPU})
    if args.command == "fanout":
        asyncio.run(fanout(args.repetitions, args.gateway_python, args.gateway_module))
    elif args.command == "storm":
        asyncio.run(storm(args.sockets, args.seconds, args.gateway_python))
    elif args.command == "capacity":
        asyncio.run(capacity(args.sockets, args.clients, args.rooms))
    else:
        asyncio.run(hold(args.url, args.count, args.rooms))


if __name__ == "__main__":
    main()
