"""Three ``python -m socket_gateway`` processes on one real redis-server behave as one gateway.

Viewers (real python-socketio clients) are spread over the three nodes. The nodes' lease is
1.5 s, so a SIGKILLed node's viewers leave every count within ~2 s (the production default, 10 s,
keeps that under 30 s). The "minute" is 2 s sampled every second, for the gateways and the ingest
service alike. Waiting on other processes has no event to await: the test polls, each wait bounded.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from service_common.timing import SnapshotTiming
from tests.gateway_support import Viewer, stored_snapshots
from tests.redis_support import (
    RedisServer,
    cluster_rig,
    latest,
    not_ready,
    poll,
    ready,
    redis_server,
    sent_duplicates,
    start_nodes,
    truth,
)

__all__ = ["redis_server"]

TIMING = SnapshotTiming(2, 1)
LEASE_SECONDS = 1.5
# The bound for a dead node's viewers to leave every count.
DEAD_NODE_BOUND = 30.0
AUCTION = "cluster-a"
REDIS_UNREACHABLE = (
    "Redis unreachable: serving this node's sockets with local counts, not ready, no snapshots"
)


async def test_three_nodes_one_count_dead_node_removed_one_snapshot_per_minute_and_redis_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    rng = random.Random(6)
    async with AsyncExitStack() as stack:
        rig = await cluster_rig(stack, tmp_path, redis_server.url, TIMING, LEASE_SECONDS, AUCTION)
        http, env, store_path = rig.http, rig.env, rig.store_path
        started = await start_nodes(stack, [env(index) for index in range(3)])
        nodes = [process for process, _ in started]
        ports = [port for _, port in started]
        for port in ports:
            await poll(functools.partial(ready, http, port), f"node on {port} ready")

        # Viewers on every node; some viewer ids on two nodes (one viewer, two devices).
        watching: list[tuple[Viewer, str | None, int]] = []

        async def join(node_index: int, viewer_id: str | None) -> None:
            viewer = Viewer(f"http://127.0.0.1:{ports[node_index]}")
            auth: dict[str, Any] = {"auctionId": AUCTION}
            if viewer_id is not None:
                auth["viewerId"] = viewer_id
            await viewer.connect(auth)
            stack.push_async_callback(viewer.disconnect)
            watching.append((viewer, viewer_id, node_index))

        async def everyone_sees_the_truth() -> bool:
            want = truth(viewer_id for _, viewer_id, _ in watching)
            return all(latest(viewer) == want for viewer, _, _ in watching)

        # Churn: joins and leaves on all three nodes, concurrently in batches.
        for step in range(6):
            await asyncio.gather(
                *(
                    join(rng.randrange(3), rng.choice([None, "shared-1", "shared-2", f"v-{step}-{i}"]))
                    for i in range(8)
                )
            )
            for _ in range(3):
                viewer, _, _ = watching.pop(rng.randrange(len(watching)))
                await viewer.disconnect()
        await poll(everyone_sees_the_truth, "every viewer on every node to see the exact global counts")
        assert {node_index for _, _, node_index in watching} == {0, 1, 2}
        assert len(watching) == 30

        # One sampler leader among the three nodes.
        leaders = 0
        for port in ports:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
                text = await answer.text()
            assert "gateway_redis_ready 1" in text.splitlines()
            leaders += "gateway_sampler_leader 1" in text.splitlines()
        assert leaders == 1

        # One snapshot per auction-minute across the three nodes: never a DUPLICATE at the ingest.
        async def two_minutes_stored() -> bool:
            return len(stored_snapshots(store_path, AUCTION)) >= 2

        await poll(two_minutes_stored, "two minutes of snapshots stored")

        # SIGKILL node 2: its viewers leave every count once its lease expires.
        killed = [entry for entry in watching if entry[2] == 2]
        assert killed
        killed_at = time.time()
        nodes[2].process.send_signal(signal.SIGKILL)
        assert await nodes[2].exited() == -signal.SIGKILL
        for viewer, _, _ in killed:
            await viewer.disconnect()
        watching = [entry for entry in watching if entry[2] != 2]
        took = await poll(everyone_sees_the_truth, "the survivors' counts", DEAD_NODE_BOUND)
        assert took < DEAD_NODE_BOUND

        # Its viewers reconnect to the other nodes (a browser retries through the load balancer).
        for index, (_, viewer_id, _) in enumerate(killed):
            await join(index % 2, viewer_id)
        await poll(everyone_sees_the_truth, "counts with the reconnected viewers")
        assert len(watching) == 30

        async def a_partial_minute() -> bool:
            return any(
                row["partial"] and row["minute_start"] + TIMING.snapshot_interval_seconds > killed_at
                for row in stored_snapshots(store_path, AUCTION)
            )

        # The minute in which node 2 was found dead is marked partial.
        await poll(a_partial_minute, "the minute of node 2's death stored as partial")

        # Redis restarted (empty): nodes say not ready meanwhile and converge when it is back.
        redis_server.stop()
        await poll(lambda: not_ready(http, ports[0]), "node 0 to report not ready")
        # Down for longer than a dropped connection's retries: node 0 leaves the cluster, loudly.
        error = await nodes[0].log_entry(REDIS_UNREACHABLE)
        assert error["level"] == "ERROR"
        viewer, _, _ = watching.pop(0)
        await viewer.disconnect()
        redis_server.start()
        await join(1, "after-restart")
        for port in ports[:2]:
            await poll(functools.partial(ready, http, port), f"node on {port} ready again")
        await poll(everyone_sees_the_truth, "convergence after the Redis restart")

        minutes = stored_snapshots(store_path, AUCTION)
        assert all(row["minute_start"] % TIMING.snapshot_interval_seconds == 0 for row in minutes)
        assert len({row["minute_start"] for row in minutes}) == len(minutes)
        assert sent_duplicates(nodes) == 0, (
            "a second node sent a snapshot for an auction-minute already stored"
        )
