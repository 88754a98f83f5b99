"""Routing between gateway nodes (issue 15): a node hears the count updates of the auctions it has
viewers in, and no others. Two gateways in this process on a real redis-server, real Socket.IO
clients."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from tests.fault_support import metrics
from tests.gateway_support import gateway_config, running_gateway
from tests.redis_support import (
    RedisBackend,
    RedisServer,
    poll,
    readyz,
    redis_backend,
    redis_server,
)

__all__ = ["redis_backend", "redis_server"]

RECEIVED = "gateway_cluster_updates_received_total"
UNSERVED = "gateway_cluster_updates_unserved_total"
RELAY_PROBLEM = "not receiving other nodes' updates (Redis pub/sub not subscribed)"


async def test_a_node_receives_updates_only_for_auctions_it_has_viewers_of(
    tmp_path: Path, redis_backend: RedisBackend
) -> None:
    """Proves that node B, with a viewer in auction "both" only, receives none of the updates node A
    publishes for "only-a" (before: every update reached every node, to be dropped there) while it
    still receives, and shows, A's updates for "both". On one Redis and on a 3-master Redis Cluster
    (GATEWAY_REDIS_CLUSTER)."""
    configs = [
        gateway_config(
            tmp_path / name,
            redis_url=redis_backend.url,
            redis_cluster=redis_backend.cluster,
            node_lease_seconds=2.0,
            gateway_id=f"node-{name}",
        )
        for name in ("a", "b")
    ]
    for config in configs:
        Path(config.outbox_path).parent.mkdir(parents=True, exist_ok=True)
    async with (
        running_gateway(configs[0]) as node_a,
        running_gateway(configs[1]) as node_b,
        aiohttp.ClientSession() as http,
    ):
        await poll(lambda: _relaying(http, [node_a.port, node_b.port]), "both nodes in Redis and subscribed")
        a_both = await node_a.viewer({"auctionId": "both", "viewerId": "a-1"})
        a_only = await node_a.viewer({"auctionId": "only-a", "viewerId": "a-2"})
        b_both = await node_b.viewer({"auctionId": "both", "viewerId": "b-1"})
        # Each node's viewers shown the other's: both nodes write and hear "both".
        await a_both.wait_for(2)
        await b_both.wait_for(2)
        before = await metrics(http, node_b.port)

        for step in range(5):
            await node_a.viewer({"auctionId": "only-a", "viewerId": f"only-{step}"})
            await a_only.wait_for(2 + step)
        # Published after every "only-a" update: once B shows it, B has heard whatever A sent before.
        await node_a.viewer({"auctionId": "both", "viewerId": "a-3"})
        await b_both.wait_for(3)
        after = await metrics(http, node_b.port)

        assert after[RECEIVED] > before[RECEIVED]
        assert after[UNSERVED] == before[UNSERVED] == 0


async def test_a_node_whose_last_viewer_leaves_a_room_stops_receiving_its_updates(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves that a node leaves a room's channel with its last viewer there: once node B's only
    viewer in "shared" has gone, node A's next updates for "shared" no longer reach B."""
    configs = [
        gateway_config(
            tmp_path / name, redis_url=redis_server.url, node_lease_seconds=2.0, gateway_id=f"node-{name}"
        )
        for name in ("a", "b")
    ]
    for config in configs:
        Path(config.outbox_path).parent.mkdir(parents=True, exist_ok=True)
    async with (
        running_gateway(configs[0]) as node_a,
        running_gateway(configs[1]) as node_b,
        aiohttp.ClientSession() as http,
        aioredis.Redis.from_url(redis_server.url) as redis,
    ):
        await poll(lambda: _relaying(http, [node_a.port, node_b.port]), "both nodes in Redis and subscribed")
        watcher = await node_a.viewer({"auctionId": "shared", "viewerId": "a-1"})
        leaving = await node_b.viewer({"auctionId": "shared", "viewerId": "b-1"})
        await watcher.wait_for(2)
        await leaving.wait_for(2)
        channel = "va:gw:u:{shared}"

        async def subscribers() -> int:
            ((_, count),) = await redis.pubsub_numsub(channel)
            return int(count)

        await leaving.disconnect()
        await watcher.wait_for(1)
        # Redis's own record of who listens on the room's channel: at most A once B has left it.
        await poll(lambda: _at_most(subscribers(), 1), "node B off the channel of its empty room")
        before = await metrics(http, node_b.port)
        for step in range(3):
            await node_a.viewer({"auctionId": "shared", "viewerId": f"more-{step}"})
            await watcher.wait_for(2 + step)
        # A marker published after those: once B's viewer there sees it, B has heard the rest.
        a_marker = await node_a.viewer({"auctionId": "marker", "viewerId": "a-2"})
        b_marker = await node_b.viewer({"auctionId": "marker", "viewerId": "b-2"})
        await a_marker.wait_for(2)
        await node_a.viewer({"auctionId": "marker", "viewerId": "a-3"})
        await b_marker.wait_for(3)
        after = await metrics(http, node_b.port)
        # None of the three for "shared" reached B (each would count as unserved: B has no viewer
        # there), and B was listening all along (it heard A's marker).
        assert after[UNSERVED] == before[UNSERVED]
        assert after[RECEIVED] > before[RECEIVED]


async def _relaying(http: aiohttp.ClientSession, ports: list[int]) -> bool:
    # The ingest service is not running: only the Redis problems matter here.
    for port in ports:
        problems = (await readyz(http, port))[1]["problems"]
        if RELAY_PROBLEM in problems or any("redis unreachable" in p for p in problems):
            return False
    return True


async def _at_most(value: Awaitable[int], bound: int) -> bool:
    return await value <= bound
