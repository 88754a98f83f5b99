"""Routing between gateway nodes (issue 15): a node hears the count updates of the auctions it has
viewers in, and no others. Two gateways in this process on a real redis-server, real Socket.IO
clients."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.fault_support import metrics
from tests.gateway_support import gateway_config, running_gateway
from tests.redis_support import RedisServer, poll, readyz, redis_server

__all__ = ["redis_server"]

RECEIVED = "gateway_cluster_updates_received_total"
UNSERVED = "gateway_cluster_updates_unserved_total"
RELAY_PROBLEM = "not receiving other nodes' updates (Redis pub/sub not subscribed)"


async def test_a_node_receives_updates_only_for_auctions_it_has_viewers_of(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves that node B, with a viewer in auction "both" only, receives none of the updates node A
    publishes for "only-a" (before: every update reached every node, to be dropped there) while it
    still receives, and shows, A's updates for "both"."""
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
    ):

        async def relaying() -> bool:
            # The ingest service is not running: only the Redis problems matter here.
            for port in (node_a.port, node_b.port):
                problems = (await readyz(http, port))[1]["problems"]
                if RELAY_PROBLEM in problems or any("redis unreachable" in p for p in problems):
                    return False
            return True

        await poll(relaying, "both nodes in Redis and subscribed")
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
