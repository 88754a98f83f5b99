"""Cluster scale benchmark (issue 15): simulated gateway nodes x auctions x viewers on one real redis-server.

Run from the repository root (figures: docs/benchmarks.md, "Cluster scale")::

    .venv/bin/python -m bench.cluster_scale --nodes 50 --auctions 100000 --viewers 1000000
    .venv/bin/python -m bench.cluster_scale --small          # the smoke run, about 2 s

With ``--old-tree PATH`` (a detached worktree of the code before the bounded design, e.g.
``git worktree add --detach /tmp/va-old 36637cd``) the same run is made there too, in a child process
with that tree's own ``socket_gateway`` on its path, and both are printed side by side.

The nodes run in this process, each with its own Redis client and the real Redis adapter
(``socket_gateway.cluster.store.RedisCounts``), speaking to Redis exactly as a node does: its sync
batches (one script per changed room, the publish gate asked in the same script), its heartbeat
(lease, reaping, the coordinator lease, its inbox) and its sampling (new: each node samples the rooms
it owns; old: the sampler leader reads every room's counts and refreshes the quiet ones). Viewers are
spread at random over the auctions and the nodes, as a load balancer would.

Phases: populate (every node writes its rooms), churn only (viewer events at ``--rate``, to count the
commands and round trips per event), steady (churn plus heartbeats and sampling ticks for
``--seconds``), and a node's death (its lease runs out; survivors reap it). Reported: Redis memory
(``used_memory``) and keys; Redis commands per viewer event (top level, as the nodes sent them) and
round trips per event; commands/s in the steady phase; the time Redis spent in one call, from Redis's
own latency tracking (``INFO latencystats``: p99 / p99.9 / max per command, the scripts being
``evalsha``) and its slow log (every call of 1 ms or more: how many, the longest); the reap's length.

Only loopback; every loop bounded in count and time; redis-server is started on a free port and
stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from socket_gateway.cluster import store as store_module
from socket_gateway.cluster.store import RedisCounts, RoomWrite

# Rooms per sync batch while populating (a node re-writing its state writes them in such chunks).
POPULATE_BATCH = 500
# The publish interval the sync batches ask the gate with (COUNT_UPDATE_INTERVAL_MS, as shipped).
INTERVAL_MS = 500
SAMPLE_SECONDS = 5.0
# Bounds every wait on Redis or on a phase.
PHASE_LIMIT = 900.0

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisProcess:
    """One redis-server without persistence, latency tracking on, every call >= 1 ms slow-logged."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (Debian's redis-server; scripts/setup as root)")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="va-cluster-scale-")
        self.process = subprocess.Popen(
            [
                *(
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ),
                *("--dir", self.workdir, "--latency-tracking", "yes"),
                *("--latency-tracking-info-percentiles", "50 99 99.9 100"),
                *("--slowlog-log-slower-than", "1000", "--slowlog-max-len", "1000000"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def wait_ready(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            # Nothing signals readiness but the socket itself: bounded polling.
            while True:
                try:
                    await client.ping()
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.02)
                except aioredis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Still inside a long script (SIGTERM waits for it): the figures are taken already.
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def busy(error: BaseException) -> bool:
    """Redis's answer to every other client while one script has run past ``busy-reply-threshold``
    (5 s): the old design's whole-keyspace scripts reach it at full size."""
    return isinstance(error, ResponseError) and str(error).startswith("BUSY")


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` again after each BUSY reply, until Redis has finished the long script (bounded)."""
    deadline = time.monotonic() + PHASE_LIMIT
    while True:
        try:
            return await call()
        except ResponseError as error:
            if not busy(error) or time.monotonic() > deadline:
                raise
            # The script ends on its own; nothing signals it but Redis answering again.
            await asyncio.sleep(0.1)


@dataclass
class Node:
    """One simulated gateway node: its Redis adapter and its sockets (viewer ids per room)."""

    store: RedisCounts
    rooms: dict[str, set[str]] = field(default_factory=dict)
    synced: dict[str, set[str]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    owned: set[str] = field(default_factory=set)
    round_trips: int = 0


class Design:
    """How a node of one design syncs, beats and samples (the code before or after the bounded design)."""

    new = hasattr(store_module, "CHUNK")

    @staticmethod
    def write(node: Node, auction_id: str, ask: bool) -> RoomWrite:
        viewers = node.rooms.get(auction_id, set())
        before = node.synced.get(auction_id, set())
        if viewers:
            node.synced[auction_id] = set(viewers)
        else:
            node.synced.pop(auction_id, None)
        return RoomWrite(auction_id, len(viewers), 0, viewers - before, before - viewers, ask)

    async def sync(self, node: Node, rooms: list[str], ask: bool = True) -> None:
        writes = [self.write(node, a, ask) for a in rooms]
        replies = await node.store.sync_rooms(writes, INTERVAL_MS)
        node.round_trips += 1
        if self.new:
            for write, synced in zip(writes, replies, strict=True):
                if synced.claimed:
                    node.owned.add(write.auction_id)

    async def beat(self, node: Node, leader: bool) -> None:
        await node.store.heartbeat()
        reaped: Any = await node.store.reap()
        if self.new:
            node.owned |= reaped.mine
            await node.store.sampler_lease()
            node.owned |= await node.store.take_inbox()
        else:
            await node.store.sampler_lease()
            if leader:
                await node.store.refresh(INTERVAL_MS)  # type: ignore[attr-defined]

    async def sample(self, node: Node, leader: bool, tick: int) -> None:
        if self.new:
            rooms = sorted(node.owned)
            minute = tick - tick % 60
            results = await node.store.sample(rooms, tick, minute, tick % 60 == 0, INTERVAL_MS)
            gone = {a for a, r in zip(rooms, results, strict=True) if r.gone or not r.owned}
            node.owned -= gone
        elif leader:
            await node.store.all_counts()  # type: ignore[attr-defined]


async def redis_info(client: aioredis.Redis) -> dict[str, Any]:
    memory = await patiently(lambda: client.info("memory"))
    stats = await client.info("stats")
    latency = await client.info("latencystats")
    slow = await client.slowlog_get(1_000_000)
    return {
        "used_memory_mb": round(memory["used_memory"] / 2**20, 1),
        "keys": await client.dbsize(),
        "commands": int(stats["total_commands_processed"]),
        "latency": latency,
        "slow_calls": len(slow),
        "slowest_ms": round(max((entry["duration"] for entry in slow), default=0) / 1000, 2),
        "slowest_command": max(slow, key=lambda e: e["duration"])["command"].decode(errors="replace")[:60]
        if slow
        else "",
    }


def latency_of(latency: dict[str, Any], command: str) -> dict[str, float]:
    """p99 / p99.9 / max (ms) of one command from ``INFO latencystats`` (redis-py parses its line)."""
    entry = latency.get(f"latency_percentiles_usec_{command}")
    if not entry:
        return {}
    return {
        name: round(float(value) / 1000, 3)
        for name, value in entry.items()
        if name in ("p99", "p99.9", "p100")
    }


async def reset(client: aioredis.Redis) -> None:
    await patiently(client.config_resetstat)
    await client.slowlog_reset()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(15)
    server = RedisProcess()
    await server.wait_ready()
    admin = aioredis.Redis.from_url(server.url, socket_timeout=PHASE_LIMIT)
    design = Design()
    out: dict[str, Any] = {"design": "new" if design.new else "old", **vars(args)}
    out.pop("old_tree", None)
    # Redis's wall clock counts the time it waits for a core: on a shared machine that is in every figure.
    out["load_average_before"] = round(os.getloadavg()[0], 1)
    try:
        nodes = [
            Node(
                RedisCounts(
                    aioredis.Redis.from_url(server.url, socket_timeout=PHASE_LIMIT), f"node-{i}", args.lease
                )
            )
            for i in range(args.nodes)
        ]
        auctions = [f"auction-{i}" for i in range(args.auctions)]
        for node in nodes:
            await node.store.heartbeat()
        # Viewers spread at random over the auctions and the nodes.
        for viewer in range(args.viewers):
            node = nodes[rng.randrange(args.nodes)]
            node.rooms.setdefault(auctions[rng.randrange(args.auctions)], set()).add(f"v{viewer}")
        started = time.perf_counter()

        async def populate(node: Node) -> None:
            rooms = sorted(node.rooms)
            for i in range(0, len(rooms), POPULATE_BATCH):
                await design.sync(node, rooms[i : i + POPULATE_BATCH], ask=False)

        async def keep_leases() -> None:
            # Every node keeps its lease while the others populate (as its heartbeat would).
            while True:
                await asyncio.gather(*(patiently(n.store.heartbeat) for n in nodes))
                await asyncio.sleep(args.lease / 3)

        leases = asyncio.create_task(keep_leases())
        await asyncio.wait_for(asyncio.gather(*(populate(n) for n in nodes)), PHASE_LIMIT)
        leases.cancel()
        await asyncio.gather(leases, return_exceptions=True)
        out["populate_seconds"] = round(time.perf_counter() - started, 1)
        out["room_node_pairs"] = sum(len(n.rooms) for n in nodes)
        populated = await redis_info(admin)
        out["redis_memory_mb"] = populated["used_memory_mb"]
        out["redis_keys"] = populated["keys"]

        # BUSY replies the nodes got (a script ran past 5 s); their writes were lost.
        busy_replies = [0]

        async def churn(seconds: float, with_ticks: bool) -> int:
            """Viewer events (a join or a leave, half each) at ``args.rate``; each node writes its changed
            rooms every 50 ms, as its sync loop does under load. With ticks: heartbeats every lease/3
            and samples every 5 s too."""
            events = 0
            step = 0.05
            end = time.perf_counter() + seconds
            next_beat = next_sample = time.perf_counter()
            while time.perf_counter() < end:
                tick_started = time.perf_counter()
                for _ in range(max(1, int(args.rate * step))):
                    node = nodes[rng.randrange(args.nodes)]
                    auction_id = auctions[rng.randrange(args.auctions)]
                    viewers = node.rooms.setdefault(auction_id, set())
                    if viewers and rng.random() < 0.5:
                        viewers.pop()
                    else:
                        viewers.add(f"c{events}")
                    node.dirty.add(auction_id)
                    events += 1
                writes = []
                for node in nodes:
                    if node.dirty:
                        rooms, node.dirty = sorted(node.dirty), set()
                        writes.append(design.sync(node, rooms))
                tasks = writes
                now = time.perf_counter()
                if with_ticks and now >= next_beat:
                    tasks += [design.beat(n, i == 0) for i, n in enumerate(nodes)]
                    next_beat = now + args.lease / 3
                if with_ticks and now >= next_sample:
                    tick = int(time.time())
                    tasks += [design.sample(n, i == 0, tick) for i, n in enumerate(nodes)]
                    next_sample = now + SAMPLE_SECONDS
                for outcome in await asyncio.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True), PHASE_LIMIT
                ):
                    if isinstance(outcome, BaseException):
                        if not busy(outcome):
                            raise outcome
                        busy_replies[0] += 1
                # The step's pace: the next batch of events is due a step after this one's start.
                await asyncio.sleep(max(0.0, step - (time.perf_counter() - tick_started)))
            return events

        await reset(admin)
        trips_before = sum(n.round_trips for n in nodes)
        churn_started = time.perf_counter()
        events = await churn(args.churn_seconds, with_ticks=False)
        churn_took = time.perf_counter() - churn_started
        info = await redis_info(admin)
        out["churn_events"] = events
        out["churn_events_per_second"] = round(events / churn_took)
        # Redis counts the commands a script runs too: these are every command, not only round trips.
        out["commands_per_event"] = round(info["commands"] / max(events, 1), 3)
        out["round_trips_per_event"] = round(
            (sum(n.round_trips for n in nodes) - trips_before) / max(events, 1), 3
        )

        await reset(admin)
        steady_started = time.perf_counter()
        steady_events = await churn(args.seconds, with_ticks=True)
        steady_took = time.perf_counter() - steady_started
        info = await redis_info(admin)
        out["steady_events_per_second"] = round(steady_events / steady_took)
        out["steady_busy_replies"] = busy_replies[0]
        out["steady_commands_per_second"] = round(info["commands"] / steady_took)
        out["steady_slow_calls_over_1ms"] = info["slow_calls"]
        out["steady_slowest_call_ms"] = info["slowest_ms"]
        out["steady_slowest_command"] = info["slowest_command"]
        out["steady_evalsha_ms"] = latency_of(info["latency"], "evalsha")
        by_command = {
            name.removeprefix("latency_percentiles_usec_"): latency_of(
                info["latency"], name.removeprefix("latency_percentiles_usec_")
            )
            for name in info["latency"]
        }
        # The five commands with the longest p99.9 (commands run inside the scripts are tracked too).
        out["steady_worst_commands_ms"] = dict(
            sorted(by_command.items(), key=lambda item: -item[1].get("p99.9", 0))[:5]
        )

        # A node's death: it stops beating; once its lease ran out the survivors reap it.
        await reset(admin)
        dead = nodes[-1]
        survivors = nodes[:-1]
        # The lease runs out on Redis's clock: nothing to await but its length.
        await asyncio.sleep(args.lease + 0.2)
        for node in survivors:
            await patiently(node.store.heartbeat)
        reap_started = time.perf_counter()
        reaper = survivors[0]
        next_beat = time.perf_counter() + args.lease / 3
        for _ in range(10_000):
            reaped: Any = await patiently(reaper.store.reap)
            changed = reaped.changed if design.new else reaped
            if not changed:
                break
            if time.perf_counter() >= next_beat:
                # The survivors keep their leases while one of them reaps (a long reap must not make
                # them dead too).
                await asyncio.gather(*(patiently(n.store.heartbeat) for n in survivors))
                next_beat = time.perf_counter() + args.lease / 3
        out["reap_seconds"] = round(time.perf_counter() - reap_started, 2)
        out["dead_node_rooms"] = len(dead.rooms)
        info = await redis_info(admin)
        out["reap_slowest_call_ms"] = info["slowest_ms"]
        out["reap_slowest_command"] = info["slowest_command"]
        out["reap_evalsha_ms"] = latency_of(info["latency"], "evalsha")
        out["load_average_after"] = round(os.getloadavg()[0], 1)
        for node in nodes:
            await node.store.client.aclose()
    finally:
        await admin.aclose()
        server.stop()
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--auctions", type=int, default=100_000)
    parser.add_argument("--viewers", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="viewer events per second in the churn")
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="the steady phase")
    parser.add_argument(
        "--lease", type=float, default=3.0, help="the node lease (s): how soon a death is reaped"
    )
    parser.add_argument(
        "--small", action="store_true", help="5 nodes, 200 auctions, 2,000 viewers, short phases"
    )
    parser.add_argument("--old-tree", type=Path, help="a worktree of the code before; run there too")
    parser.add_argument("--json", action="store_true", help="print one JSON object (as the child run does)")
    args = parser.parse_args(argv)
    if args.small:
        args.nodes, args.auctions, args.viewers = 5, 200, 2_000
        args.rate, args.churn_seconds, args.seconds, args.lease = 500.0, 0.2, 0.4, 0.5
    return args


def old_run(args: argparse.Namespace) -> dict[str, Any]:
    """The same run in ``--old-tree``: this file copied there, that tree's packages on the path."""
    tree = args.old_tree.resolve()
    shutil.copy(__file__, tree / "bench" / "cluster_scale.py")
    argv = [sys.executable, "-m", "bench.cluster_scale", "--json"]
    argv += ["--nodes", str(args.nodes), "--auctions", str(args.auctions), "--viewers", str(args.viewers)]
    argv += [
        "--rate",
        str(args.rate),
        "--churn-seconds",
        str(args.churn_seconds),
        "--seconds",
        str(args.seconds),
    ]
    argv += ["--lease", str(args.lease)]
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'generated'}"}
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=3 * PHASE_LIMIT)
    if done.returncode:
        raise SystemExit(f"the run in {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    result = asyncio.run(run(args))
    # Printed at once: the old design's run comes after, and may take as long.
    print(json.dumps(result) if args.json else json.dumps(result, indent=1), flush=True)
    if args.old_tree is not None:
        print(json.dumps(old_run(args), indent=1), flush=True)


if __name__ == "__main__":
    main()
