"""Gateway cluster benchmark: three gateway nodes on one redis-server under join/leave churn.

Run from the repository root (figures: docs/benchmarks.md, "Gateway cluster (Redis)")::

    .venv/bin/python -m bench.gateway_cluster --rate 500 --seconds 60

Three ``python -m socket_gateway`` processes with ``REDIS_URL`` run pinned to CPU 0 (as shipped:
``COUNT_UPDATE_INTERVAL_MS=500``, 10 s node lease); redis-server and this process, the lean load
client, share CPU 1. ``--base`` viewers stay connected all along, spread over the nodes and rooms,
and one observer socket per room on every node records each ``viewerCountUpdate`` it receives.
Churn: ``--rate`` sockets per second in total open (joining a room through the connect ``auth``),
hold for up to ``--hold`` seconds and close, each on a random node and room.

Reported: whether every observer on every node ends on the exact count and how long that took
after the churn stopped (convergence); ``viewerCountUpdate`` messages per room per second seen by
one observer (the goal is at most 2); Redis commands per viewer event (a connect+join or a leave),
both the round trips the nodes made (``EVALSHA``, ``PUBLISH`` …) and every command including those
run inside the Lua scripts (``INFO commandstats``); whether the load kept pace (opens failed or
late, the achieved rate); and the nodes' own CPU time per viewer event (from /proc, so it holds
whatever else the machine runs) with the load average before and after the churn.

Only loopback addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bench.gateway_bench import CLIENT_CPU, STEP_TIMEOUT, _session, gateway_server
from bench.lean_socketio import LeanSocket
from testkit.waiting import poll

NODES = 3
UPDATE_PREFIX = '42["viewerCountUpdate",'
GOAL_MESSAGES_PER_ROOM_PER_SECOND = 2.0
# A churn socket that cannot open within this is counted as failed (the nodes are overloaded).
OPEN_TIMEOUT = 10.0


class Observer:
    """One socket in one room that keeps every viewerCountUpdate it receives, with its arrival time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.updates: list[tuple[float, int, int]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, auction_id: str) -> Observer:
        ws = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40" + json.dumps({"auctionId": auction_id}))
        assert (await ws.receive_str()).startswith("40")
        return cls(ws)

    async def _read(self) -> None:
        async for message in self.ws:
            data = message.data
            if isinstance(data, str) and data.startswith(UPDATE_PREFIX):
                payload = json.loads(data[2:])[1]
                self.updates.append((time.monotonic(), payload["viewerCount"], payload["uniqueViewers"]))
            elif data == "2":
                await self.ws.send_str("3")

    def latest(self) -> tuple[int, int] | None:
        return self.updates[-1][1:] if self.updates else None

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def command_stats(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def run(
    rate: int, seconds: float, hold: float, base: int, rooms: int, seed: int, node_cpus: str, client_cpus: str
) -> dict[str, Any]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (scripts/setup installs Debian's package as root)")
    rng = random.Random(seed)
    auctions = [f"bench-{i}" for i in range(rooms)]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        redis_proc = await asyncio.create_subprocess_exec(
            "taskset", "-c", client_cpus, binary, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", tmp,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")

        async def redis_answers() -> bool:
            try:
                await client.ping()
            except (OSError, RedisError):
                return False
            return True

        await poll(redis_answers, "redis-server to answer", within=10)
        try:
            async with contextlib.AsyncExitStack() as stack:
                servers = []
                for index in range(NODES):
                    node_dir = workdir / f"node-{index}"
                    node_dir.mkdir()
                    servers.append(
                        await stack.enter_async_context(
                            gateway_server(
                                500,
                                node_dir,
                                extra_env={
                                    "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                                    "GATEWAY_ID": f"node-{index}",
                                },
                                cpus=node_cpus,
                            )
                        )
                    )
                session = await stack.enter_async_context(_session())
                # Nodes write their state on their first heartbeat; wait until all three are live.

                async def all_live() -> bool:
                    return bool(await client.zcard("va:gw:nodes") >= NODES)

                await poll(all_live, "every node to join", within=STEP_TIMEOUT)
                observers = {
                    (n, a): await Observer.open(session, servers[n].url, a)
                    for n in range(NODES)
                    for a in auctions
                }
                stayers = []
                for i in range(base):
                    auth = {"auctionId": auctions[i % rooms], "viewerId": f"stay-{i % (base // 2 or 1)}"}
                    stayers.append((auth, await LeanSocket.open(servers[i % NODES].url, auth)))
                before = await command_stats(client)
                cpu_before = sum(server.cpu_seconds() for server in servers)
                load_before = os.getloadavg()
                events = 0
                lagging = 0
                churn_tasks: set[asyncio.Task[None]] = set()
                started = time.monotonic()

                failed = 0

                async def one(url: str, auth: dict[str, str], held: float) -> None:
                    nonlocal events, failed
                    try:
                        sock = await asyncio.wait_for(LeanSocket.open(url, auth), OPEN_TIMEOUT)
                    except (OSError, TimeoutError):
                        # An overloaded node: counted, and the benchmark goes on.
                        failed += 1
                        return
                    events += 1
                    await asyncio.sleep(held)
                    await sock.close()
                    events += 1

                total = int(rate * seconds)
                for i in range(total):
                    due = started + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -1:
                        lagging += 1
                    auth = {"auctionId": rng.choice(auctions), "viewerId": f"churn-{rng.randrange(total)}"}
                    task = asyncio.create_task(
                        one(servers[rng.randrange(NODES)].url, auth, rng.uniform(0, hold))
                    )
                    churn_tasks.add(task)
                    task.add_done_callback(churn_tasks.discard)
                churn_window = time.monotonic() - started
                await asyncio.wait_for(asyncio.gather(*churn_tasks), STEP_TIMEOUT)
                stopped = time.monotonic()
                # The nodes' own CPU time, whatever else the machine runs: the cost per viewer event.
                node_cpu = sum(server.cpu_seconds() for server in servers) - cpu_before

                # The truth once the churn is over is what the nodes themselves hold: a churn socket
                # whose open timed out may still have joined on an overloaded node, so the client's
                # own bookkeeping is not the truth. Converged: the three observers of every room agree,
                # and the rooms' counts add up to the sockets in rooms on all nodes (their /metrics).
                async def members() -> int:
                    total = 0
                    for server in servers:
                        async with session.get(f"{server.url}/metrics") as answer:
                            for line in (await answer.text()).splitlines():
                                if line.startswith("gateway_room_members "):
                                    total += int(float(line.split()[1]))
                    return total

                converged_at = None
                expected_total = None
                while time.monotonic() - stopped < 120:
                    latest = {key: obs.latest() for key, obs in observers.items()}
                    agreed = [latest[(0, a)] for a in auctions]
                    if all(latest[key] == latest[(0, key[1])] for key in latest) and None not in agreed:
                        expected_total = await members()
                        if sum(counts[0] for counts in agreed if counts is not None) == expected_total:
                            converged_at = max(obs.updates[-1][0] for obs in observers.values())
                            break
                    await asyncio.sleep(0.05)
                after = await command_stats(client)
                window_end = stopped
                per_room = [
                    sum(1 for t, _, _ in obs.updates if started <= t <= window_end) / (window_end - started)
                    for obs in observers.values()
                ]
                inner = sum(after.values()) - sum(before.values())
                round_trips = sum(
                    after.get(name, 0) - before.get(name, 0)
                    for name in ("evalsha", "eval", "script|load", "script|exists", "publish")
                )
                # The benchmark's own INFO call is not the nodes' work.
                inner -= 1
                result = {
                    "nodes": NODES,
                    "rooms": rooms,
                    "base_viewers": base,
                    "churn_rate_per_second": rate,
                    "churn_seconds": seconds,
                    "churn_window_seconds": round(churn_window, 2),
                    "schedule_lagging_opens": lagging,
                    "viewer_events": events,
                    "churn_opens_failed": failed,
                    # Sockets that opened (each a connect+join, then a leave) per second of churn.
                    "achieved_opens_per_second": round(events / 2 / churn_window, 1),
                    "node_cpu_seconds": round(node_cpu, 2),
                    "node_cpu_ms_per_viewer_event": round(1000 * node_cpu / events, 3),
                    "load_average_1m_before_and_after": [
                        round(load_before[0], 2),
                        round(os.getloadavg()[0], 2),
                    ],
                    "converged": converged_at is not None,
                    "sockets_in_rooms_at_end": expected_total,
                    "convergence_seconds": round(converged_at - stopped, 3) if converged_at else None,
                    "messages_per_room_per_second_max": round(max(per_room), 3),
                    "messages_per_room_per_second_mean": round(sum(per_room) / len(per_room), 3),
                    "goal_messages_per_room_per_second": GOAL_MESSAGES_PER_ROOM_PER_SECOND,
                    "redis_round_trips_per_event": round(round_trips / events, 3),
                    "redis_commands_per_event_incl_lua": round(inner / events, 3),
                    "redis_commands_top": sorted(
                        ((n, after[n] - before.get(n, 0)) for n in after), key=lambda kv: -kv[1]
                    )[:8],
                }
                for obs in observers.values():
                    await obs.close()
                for _, sock in stayers:
                    await sock.close()
                return result
        finally:
            await client.aclose()
            redis_proc.terminate()
            await redis_proc.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=500, help="churn sockets opened per second, in total")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the churn lasts")
    parser.add_argument("--hold", type=float, default=2.0, help="longest a churn socket stays")
    parser.add_argument("--base", type=int, default=300, help="viewers connected all along")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--node-cpus", default="0", help="taskset list for the three nodes (together)")
    parser.add_argument(
        "--client-cpus", default=str(CLIENT_CPU), help="taskset list for this load client and redis-server"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(cpu) for cpu in args.client_cpus.split(",")})
    setup = (args.rate, args.seconds, args.hold, args.base, args.rooms, args.seed)
    result = asyncio.run(run(*setup, args.node_cpus, args.client_cpus))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
