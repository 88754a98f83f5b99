"""The gateway's samples and unique-viewer sketches, end to end: real Socket.IO viewers join a real
gateway, its snapshots reach a real ingest service, and a real GraphQL API answers from them."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import jwt
import pytest
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2

from ingest_service.storage.snapshot_details import decode_samples
from socket_gateway.cluster.node import ClusterNode
from testkit.waiting import poll
from tests.conftest import RunningIngest
from tests.gateway_support import (
    WAIT,
    ManualClock,
    RunningGateway,
    Viewer,
    gateway_config,
    running_gateway,
    stored_snapshots,
    wait_until,
)
from tests.graphql_support import RunningGraphQL, graphql_config, running_graphql, seller_token
from tests.integration.test_ingest_auction_events import closed, opened, record
from tests.redis_support import RedisServer, redis_server

__all__ = ["redis_server"]

TOKEN_SECRET = "s" * 40
AUDIENCE_QUERY = """
query Audience($id: ID!) {
  auction(id: $id) {
    viewerAnalytics { summary { snapshotCount uniqueViewers } }
    funnel { uniqueViewers identifiedViewers }
    lots { lotId viewersAtOpen viewersAtClose peakViewers resolution }
  }
}
"""


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


def viewer_token(subject: str) -> str:
    return jwt.encode({"sub": subject, "exp": int(time.time()) + 600}, TOKEN_SECRET, algorithm="HS256")


async def audience_of(api: RunningGraphQL, auction_id: str) -> dict[str, object]:
    answer = await api.execute(AUDIENCE_QUERY, {"id": auction_id}, token=seller_token(auction_id))
    assert answer.errors == []
    auction: dict[str, object] = answer.data["auction"]
    return auction


async def test_unique_viewers_and_per_lot_samples_from_what_the_gateway_saw(
    api: RunningGraphQL, ingest: RunningIngest, tmp_path: Path
) -> None:
    client = ingest.client()
    for auction_id in ("signed-in", "open"):
        await client.set_analytics(auction_id, True)
    ingest.clock.advance(-ingest.clock.now % 300)
    start = int(ingest.clock.now)  # on a five-minute boundary: both minutes in one five-minute bucket

    # Viewer tokens on: every viewer is identified by its token's subject.
    config = gateway_config(
        tmp_path, ingest_target=ingest.target, viewer_token_secret=TOKEN_SECRET, gateway_id="gw-signed"
    )
    async with running_gateway(config, ManualClock(ingest.clock)) as gateway:
        registry = gateway.gateway.registry

        async def join(subject: str) -> Viewer:
            viewer = await gateway.viewer({"auctionId": "signed-in", "token": viewer_token(subject)})
            await viewer.wait_for(registry.counts("signed-in").viewer_count)
            return viewer

        await join("alice")
        await join("alice")  # a second tab
        bob = await join("bob")
        await gateway.step(10)
        # carol comes and goes between two ticks: in no sample, yet one of the minute's viewers.
        carol = await gateway.viewer({"auctionId": "signed-in", "token": viewer_token("carol")})
        await carol.disconnect()
        await wait_until(lambda: registry.counts("signed-in").viewer_count == 3, "carol gone")
        await gateway.step(10)
        await join("dave")
        await gateway.step(40)
        await bob.disconnect()  # in the second minute
        await gateway.step(60)
        await gateway.delivered()

    rows = stored_snapshots(ingest.config.sqlite_path, "signed-in")
    assert [(row["minute_start"], decode_samples(row["samples"])) for row in rows] == [
        (start, (3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4)),
        (start + 60, (3,) * 12),
    ]
    acks = await record(
        client,
        opened("o-1", start + 12, "lot-1", auction="signed-in"),
        closed("c-1", start + 41, "lot-1", events_pb2.LOT_OUTCOME_PASSED, auction="signed-in"),
    )
    assert all(ack.outcome == events_pb2.AUCTION_EVENT_OUTCOME_STORED for ack in acks), acks

    # No viewer tokens: ids are only claimed (anonymous), and a socket without one counts alone.
    config = gateway_config(tmp_path / "open", ingest_target=ingest.target, gateway_id="gw-open")
    (tmp_path / "open").mkdir()
    async with running_gateway(config, ManualClock(ingest.clock)) as gateway:
        for auth in ({"viewerId": "v1"}, {"viewerId": "v1"}, {}, {}):
            viewer = await gateway.viewer({"auctionId": "open", **auth})
        await viewer.wait_for(4, unique_viewers=3)
        await gateway.step(60)
        await gateway.delivered()

    signed_in = await audience_of(api, "signed-in")
    # alice, bob, carol, dave: exact at this size (the sketch's estimate rounds to it).
    assert signed_in["viewerAnalytics"] == {"summary": {"snapshotCount": 2, "uniqueViewers": 4}}
    assert signed_in["funnel"] == {"uniqueViewers": 4, "identifiedViewers": 4}
    # Viewers at the lot's open (start + 12) and close (start + 41) from the nearest 5-second samples.
    assert signed_in["lots"] == [
        {"lotId": "lot-1", "viewersAtOpen": 3, "viewersAtClose": 4, "peakViewers": 4, "resolution": "SAMPLES"}
    ]
    # The CSV export's unique viewers per bucket: per minute (the second: alice, bob, there at its
    # start, and dave), and the two minutes merged in one five-minute bucket (not 4 + 3).
    assert await csv_unique_viewers(api, "signed-in", "MINUTE") == {start: 4, start + 60: 3}
    assert await csv_unique_viewers(api, "signed-in", "FIVE_MINUTES") == {start: 4}
    open_auction = await audience_of(api, "open")
    assert open_auction["viewerAnalytics"] == {"summary": {"snapshotCount": 1, "uniqueViewers": 3}}
    assert open_auction["funnel"] == {"uniqueViewers": 3, "identifiedViewers": 0}


async def test_across_two_nodes_a_viewer_on_both_is_counted_once(
    api: RunningGraphQL, ingest: RunningIngest, tmp_path: Path, redis_server: RedisServer
) -> None:
    await ingest.client().set_analytics("shared", True)
    start = int(ingest.clock.now)
    clock = ManualClock(ingest.clock)  # one clock for both nodes: each tick wakes both samplers
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        configs.append(
            gateway_config(
                tmp_path / name,
                ingest_target=ingest.target,
                redis_url=redis_server.url,
                node_lease_seconds=2.0,
                gateway_id=f"node-{name}",
            )
        )
    async with running_gateway(configs[0], clock) as a, running_gateway(configs[1], clock) as b:
        nodes = (a, b)

        def leader() -> RunningGateway | None:
            return next((node for node in nodes if cluster_of(node).sampler.token), None)

        await wait_until(
            lambda: (
                all(cluster_of(n).ready and cluster_of(n).relay.listening for n in nodes) and bool(leader())
            ),
            "both nodes in the cluster and one sampling",
        )
        closing = leader()
        assert closing is not None
        other = b if closing is a else a
        # "both" watches on both nodes (two devices), beside one viewer on each node alone.
        mine = await closing.viewer({"auctionId": "shared", "viewerId": "both"})
        await closing.viewer({"auctionId": "shared", "viewerId": "only-here"})
        theirs = await other.viewer({"auctionId": "shared", "viewerId": "both"})
        await other.viewer({"auctionId": "shared"})  # no id: a viewer of its own
        for viewer in (mine, theirs):
            await viewer.wait_for(4, unique_viewers=3)

        async def tick() -> None:
            taken = [node.gateway.metrics.samples_total for node in nodes]
            await clock.advance(5)
            for node, total in zip(nodes, taken, strict=True):
                await asyncio.wait_for(node.gateway.require_sampler().wait_for_samples(total + 1), WAIT)

        for _ in range(3):
            await tick()
        # A visitor on the node that does not close the minute, between two ticks: only its share has it.
        visitor = await other.viewer({"auctionId": "shared", "viewerId": "visitor"})
        await visitor.disconnect()
        await wait_until(
            lambda: other.gateway.registry.counts("shared").viewer_count == 2, "the visitor gone"
        )

        async def gone_from_the_global_counts() -> bool:
            # The closing node samples the cluster's counts, which the leave reaches by its node's
            # next sync to Redis: the next tick must not find the visitor still there.
            counts = await cluster_of(closing).store.counts_of(["shared"])
            return counts["shared"].viewer_count == 4

        await poll(gone_from_the_global_counts, "the visitor gone from the cluster's counts", within=WAIT)
        for _ in range(9):
            await tick()

        async def closed_minute_stored() -> bool:
            # The closed minute waits until both nodes have renewed their leases since its close (a
            # real-time heartbeat: cluster/death_watch.py); a later tick queues it.
            await tick()
            return bool(stored_snapshots(ingest.config.sqlite_path, "shared"))

        await poll(closed_minute_stored, "the closed minute stored", within=WAIT, every=0.2)
        for node in nodes:
            await node.delivered()

    # One snapshot of the minute, from the closing node, with the global counts' samples. The ticks
    # that waited for it may have closed the next minute too (its viewers are the same three).
    rows = stored_snapshots(ingest.config.sqlite_path, "shared")
    assert [
        (row["minute_start"], row["gateway_id"], decode_samples(row["samples"]))
        for row in rows
        if row["minute_start"] == start
    ] == [(start, closing.gateway.config.gateway_id, (4,) * 12)]
    shared = await audience_of(api, "shared")
    # both, only-here, the id-less socket and the visitor: four, "both" counted once across the nodes.
    assert shared["viewerAnalytics"] == {"summary": {"snapshotCount": len(rows), "uniqueViewers": 4}}


async def csv_unique_viewers(api: RunningGraphQL, auction_id: str, bucket: str) -> dict[int, int]:
    """The ``unique_viewers`` column of the auction's CSV export over the last hour, by bucket start."""
    response = await api.get(
        f"/export/auctions/{auction_id}/viewer-analytics.csv",
        params={"range": "LAST_HOUR", "bucket": bucket},
        token=seller_token(auction_id),
    )
    assert response.status == 200, await response.text()
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    return {
        int(datetime.fromisoformat(row["at_utc"]).timestamp()): int(row["unique_viewers"]) for row in rows
    }


def cluster_of(node: RunningGateway) -> ClusterNode:
    cluster = node.gateway.cluster
    assert cluster is not None
    return cluster
