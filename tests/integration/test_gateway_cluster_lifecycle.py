"""Gateway nodes on a real redis-server starting and stopping: graceful stops and Redis down at start.

Real ``python -m socket_gateway`` processes, real python-socketio clients and the real ingest
service on SQLite. Waiting on other processes has no event to await: the tests poll, each wait
bounded.
"""

from __future__ import annotations

import asyncio
import functools
import math
import signal
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from service_common.timing import SnapshotTiming
from socket_gateway.cluster.node import redis_client
from socket_gateway.cluster.store import room_key
from tests.fault_support import ServiceProcess, metrics
from tests.gateway_support import Viewer, gateway_config, running_gateway, stored_snapshots
from tests.redis_support import (
    RedisServer,
    cluster_rig,
    latest,
    not_ready,
    poll,
    ready,
    readyz,
    redis_server,
    sent_duplicates,
    start_nodes,
    truth,
)

__all__ = ["redis_server"]

AUCTION = "cluster-lifecycle"
REDIS_UNREACHABLE = (
    "Redis unreachable: serving this node's sockets with local counts, not ready, no snapshots"
)
REACHABLE_AGAIN = "Redis reachable again; this node's counts re-synced"
REAPED = "Dead gateway node(s) reaped; their viewers removed"


class Viewers:
    """Real Socket.IO clients in one auction, by node; closed when the test's exit stack closes."""

    def __init__(self, stack: AsyncExitStack, ports: list[int]) -> None:
        self._stack = stack
        self._ports = ports
        self.by_node: dict[int, list[tuple[Viewer, str | None]]] = {index: [] for index in range(len(ports))}

    async def join(self, node: int, viewer_id: str | None) -> None:
        viewer = Viewer(f"http://127.0.0.1:{self._ports[node]}")
        auth: dict[str, Any] = {"auctionId": AUCTION}
        if viewer_id is not None:
            auth["viewerId"] = viewer_id
        await viewer.connect(auth)
        self._stack.push_async_callback(viewer.disconnect)
        self.by_node[node].append((viewer, viewer_id))

    async def see(self, nodes: list[int], counted: list[int]) -> bool:
        """Whether every viewer on ``nodes`` shows the counts of the viewers on ``counted``."""
        want = truth(viewer_id for node in counted for _, viewer_id in self.by_node[node])
        return all(latest(viewer) == want for node in nodes for viewer, _ in self.by_node[node])


async def test_nodes_stopped_one_after_another_hand_their_counts_back_and_the_open_minute_is_stored_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A 4 s "minute" sampled every second. A 4 s lease: a lease expiry would take 4-5.3 s to remove a
    # stopped node's viewers, so counts that drop sooner (and no survivor reaping) prove the handback.
    timing = SnapshotTiming(4, 1)
    lease = 4.0
    async with AsyncExitStack() as stack:
        rig = await cluster_rig(stack, tmp_path, redis_server.url, timing, lease, AUCTION)
        http, env, store_path = rig.http, rig.env, rig.store_path
        nodes = await start_nodes(stack, [env(index) for index in range(3)])
        ports = [port for _, port in nodes]
        for port in ports:
            await poll(functools.partial(ready, http, port), f"node on {port} ready")
        viewers = Viewers(stack, ports)
        # One viewer on two nodes (two devices) and an anonymous one: unique counts must drop right too.
        placed: list[list[str | None]] = [["a", "shared"], ["b", "shared"], ["c", None]]
        for node, viewer_ids in enumerate(placed):
            for viewer_id in viewer_ids:
                await viewers.join(node, viewer_id)
        await poll(lambda: viewers.see([0, 1, 2], [0, 1, 2]), "every viewer to see the global counts")

        redis = aioredis.Redis.from_url(redis_server.url)
        stack.push_async_callback(redis.aclose)

        async def leader(among: list[int]) -> int | None:
            # The node that owns the auction's sampling (its member is "node-<index>@...") and knows it.
            member = await redis.get(f"va:gw:{{{AUCTION}}}:o")
            text = member.decode() if isinstance(member, bytes) else member
            index = int(text.split("@")[0].removeprefix("node-")) if text else None
            if index not in among:
                return None
            owned = (await metrics(http, ports[index])).get("gateway_sampling_owned_rooms", 0)
            return index if owned else None

        async def led(among: list[int]) -> bool:
            return await leader(among) is not None

        running = [0, 1, 2]
        await poll(functools.partial(led, running), "an owner of the auction's sampling")
        # Each stop is of the auction's sampling owner, so the ownership moves each time. The first
        # comes a little after a minute begins, so the owner has sampled the minute open at its stop.
        # A position on the wall clock, not an event: sleeping until it is the only way to reach it.
        boundary = (
            math.ceil(time.time() / timing.snapshot_interval_seconds) * timing.snapshot_interval_seconds
        )
        await asyncio.sleep(boundary + 0.3 - time.time())

        stopped: list[tuple[ServiceProcess, float]] = []
        while running:
            await poll(functools.partial(led, running), "an owner of the auction's sampling", bound=lease)
            index = await leader(running)
            assert index is not None
            process, _ = nodes[index]
            signalled = time.time()
            process.process.send_signal(signal.SIGTERM)
            running.remove(index)
            if running:
                took = await poll(
                    lambda: viewers.see(running, running),
                    f"counts without node {index}'s viewers",
                    bound=lease,
                )
                assert took < lease
            assert await process.exited() == 0
            stopped.append((process, signalled))

        survivors_reaped = [entry for process, _ in stopped for entry in process.entries(REAPED)]
        assert not survivors_reaped, (
            "a stopped node's counts were removed by its lease expiring, not handed back"
        )

        interval = timing.snapshot_interval_seconds
        minutes = [row["minute_start"] for row in stored_snapshots(store_path, AUCTION)]
        last_open = int(stopped[-1][1] // interval * interval)
        # No minute lost (a stop hands the minute on or closes it) and none sent twice.
        assert minutes == list(range(minutes[0], last_open + interval, interval))
        assert sent_duplicates(process for process, _ in stopped) == 0
        # Every minute open at a stop is marked partial.
        partial = {row["minute_start"]: row["partial"] for row in stored_snapshots(store_path, AUCTION)}
        for _, signalled in stopped:
            assert partial[int(signalled // interval * interval)] == 1


async def test_a_node_started_while_redis_is_down_serves_local_counts_then_converges(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    timing = SnapshotTiming(2, 1)
    redis_server.stop()
    async with AsyncExitStack() as stack:
        rig = await cluster_rig(stack, tmp_path, redis_server.url, timing, 1.5, AUCTION)
        http, env = rig.http, rig.env
        nodes = await start_nodes(stack, [env(index) for index in range(2)])
        ports = [port for _, port in nodes]
        for process, port in nodes:
            error = await process.log_entry(REDIS_UNREACHABLE)
            assert error["level"] == "ERROR"
            status, body = await readyz(http, port)
            assert status == 503
            assert any("redis unreachable" in problem for problem in body["problems"])

        # Each node serves its own sockets and tells them its local counts.
        viewers = Viewers(stack, ports)
        local: list[list[str | None]] = [["a", "b", None], ["b"]]
        for node, viewer_ids in enumerate(local):
            for viewer_id in viewer_ids:
                await viewers.join(node, viewer_id)
        for node in (0, 1):
            await poll(functools.partial(viewers.see, [node], [node]), f"node {node}'s local counts")
        for port in ports:
            assert await not_ready(http, port)

        redis_server.start()
        for port in ports:
            await poll(functools.partial(ready, http, port), f"node on {port} ready once Redis is up")
        for process, _ in nodes:
            await process.log_entry(REACHABLE_AGAIN)
            # Loud once per outage, not on every failed heartbeat.
            assert len(process.entries(REDIS_UNREACHABLE)) == 1
        await poll(lambda: viewers.see([0, 1], [0, 1]), "the global counts on both nodes")
        # Counts flow between the nodes from now on. The relay's pub/sub listener re-subscribes on its
        # own retry (every 0.5 s); an update it missed is repaired by the sampler leader telling quiet
        # rooms their counts again (once per lease).
        await viewers.join(1, "c")
        await poll(lambda: viewers.see([0, 1], [0, 1]), "a join on one node shown on both")


async def test_readyz_says_so_while_the_relay_from_other_nodes_is_down(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves /readyz reads the relay's pub/sub listener itself, not only this node's counts in
    Redis: the listener's problem appears when Redis goes and clears once it has re-subscribed."""
    relay_problem = "not receiving other nodes' updates (Redis pub/sub not subscribed)"
    config = gateway_config(tmp_path, redis_url=redis_server.url, node_lease_seconds=2.0)
    async with running_gateway(config) as running, aiohttp.ClientSession() as http:

        async def problems() -> list[str]:
            _, body = await readyz(http, running.port)
            return list(body["problems"])

        await poll(lambda: _without(relay_problem, problems()), "the listener subscribed")
        redis_server.stop()
        await poll(lambda: _with(relay_problem, problems()), "/readyz to report the relay down")
        redis_server.start()
        await poll(lambda: _without(relay_problem, problems()), "the listener re-subscribed")


async def test_another_nodes_update_reaches_this_nodes_sockets_through_the_fanout(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves a node delivers what another node published through its RoomFanout (one frame written
    into each WebSocket), not python-socketio's task per recipient: node A's viewer hears node B's
    join, and node A's own message counters grew by that delivery, written directly."""
    configs = [
        gateway_config(
            tmp_path / name, redis_url=redis_server.url, node_lease_seconds=2.0, gateway_id=f"node-{name}"
        )
        for name in ("a", "b")
    ]
    for config in configs:
        Path(config.outbox_path).parent.mkdir(parents=True, exist_ok=True)
    async with running_gateway(configs[0]) as node_a, running_gateway(configs[1]) as node_b:

        async def both_relaying() -> bool:
            # A node hears the others only once the relay's listener has subscribed (/readyz
            # waits for the same); an update published before that is repaired later, not relayed.
            clusters = [node.gateway.cluster for node in (node_a, node_b)]
            listening = all(cluster is not None and cluster.relay.listening for cluster in clusters)
            return listening and all(cluster is not None and cluster.ready for cluster in clusters)

        await poll(both_relaying, "both nodes subscribed to each other's updates")
        watcher = await node_a.viewer({"auctionId": "relayed", "viewerId": "watcher"})
        await watcher.wait_for(1)
        metrics = node_a.gateway.metrics
        before = (metrics.count_messages_total, metrics.count_messages_direct_total)
        await node_b.viewer({"auctionId": "relayed", "viewerId": "joiner"})
        await watcher.wait_for(2)
        delivered = metrics.count_messages_total - before[0]
        direct = metrics.count_messages_direct_total - before[1]
        assert delivered >= 1
        assert direct == delivered


async def _with(problem: str, problems: Awaitable[list[str]]) -> bool:
    return problem in await problems


async def _without(problem: str, problems: Awaitable[list[str]]) -> bool:
    return problem not in await problems


async def test_dropped_redis_connections_are_retried_and_a_stall_within_the_timeout_keeps_the_node_in(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves the node's Redis client retries a call whose pooled connection Redis dropped (``CLIENT
    KILL``, as a restart or Redis's idle ``timeout`` does) instead of leaving the cluster on it, that
    a Redis stall shorter than ``GATEWAY_REDIS_TIMEOUT_SECONDS`` (1.2 s against a 1.8 s timeout: the
    hard-coded 1 s took the node out) is waited for, and that a real stop and restart of Redis is one
    outage, with the node back in and staying in."""
    config = gateway_config(
        tmp_path,
        redis_url=redis_server.url,
        node_lease_seconds=3.0,
        redis_timeout_seconds=1.8,
    )
    # The test's own client is the node's kind: Redis's restart below drops its connection too.
    admin = redis_client(redis_server.url, 1.0, 3)
    async with running_gateway(config) as running:
        cluster = running.gateway.cluster
        assert cluster is not None
        degraded: list[float] = []
        cluster.health.on_degrade(lambda: degraded.append(time.monotonic()))

        async def in_cluster() -> bool:
            return cluster.ready and cluster.relay.listening

        await poll(in_cluster, "the node in the cluster")
        viewer = await running.viewer({"auctionId": "kill-0", "viewerId": "v"})
        for step in range(1, 5):
            # Every connection of the node's pool dropped by Redis, then a change the node must write.
            await admin.client_kill_filter(_type="normal", skipme=True)
            ack = await viewer.call("joinAuction", {"auctionId": f"kill-{step}"})
            assert ack["ok"]
            await poll(functools.partial(_written, admin, f"kill-{step}"), f"join {step} written to Redis")
        assert degraded == [], "a dropped pooled connection took the node out of the cluster"

        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            ack = await viewer.call("joinAuction", {"auctionId": "stalled"})
            assert ack["ok"]
            # A stall, not an event: Redis is paused for a fixed time, as a slow script would hold it.
            await asyncio.sleep(1.2)
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await poll(functools.partial(_written, admin, "stalled"), "the join made during the stall written")
        assert degraded == [], "a Redis stall within GATEWAY_REDIS_TIMEOUT_SECONDS took the node out"

        stopped = time.monotonic()
        redis_server.stop()
        await poll(lambda: _not(cluster.ready), "the node degraded while Redis is down")
        redis_server.start()
        await poll(in_cluster, "the node back once Redis is up")
        back = time.monotonic()
        for step in range(2):
            await admin.client_kill_filter(_type="normal", skipme=True)
            ack = await viewer.call("joinAuction", {"auctionId": f"after-{step}"})
            assert ack["ok"]
            await poll(functools.partial(_written, admin, f"after-{step}"), f"join {step} after the restart")
        # A heartbeat (a third of the lease) after the pool was dropped once more.
        await poll(lambda: _later_than(back + 1.0), "a heartbeat after the return", bound=5.0)
        assert cluster.ready
        assert degraded, "the node never noticed Redis was down"
        assert all(stopped < moment < back for moment in degraded), (
            "the node dropped out again after re-syncing"
        )
    await admin.aclose()


async def _written(admin: aioredis.Redis, auction_id: str) -> bool:
    """Whether Redis holds this node's one connection in ``auction_id``'s room."""
    return bool(await admin.hlen(f"{room_key(auction_id)}:c"))


async def _not(condition: bool) -> bool:
    return not condition


async def _later_than(moment: float) -> bool:
    return time.monotonic() >= moment
