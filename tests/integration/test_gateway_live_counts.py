"""LiveCountService.WatchViewerCounts (issue 18): the gateway's live counts over its internal gRPC port.

Real gateways on port 0 with real python-socketio viewers, and a real gRPC channel reading the stream;
with Redis, two gateway nodes on a real redis-server.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import pytest
from viewer_analytics.v1 import live_count_service_pb2 as pb
from viewer_analytics.v1 import live_count_service_pb2_grpc as pb_grpc

from service_common.internal_auth import internal_key_metadata
from tests.gateway_support import WAIT, RunningGateway, gateway_config, running_gateway
from tests.redis_support import RedisServer, poll, redis_server
from tests.support import TEST_KEY

__all__ = ["redis_server"]


@dataclass
class CountStream:
    """One WatchViewerCounts call, read by a task into ``updates`` (auction id, counts, at seconds)."""

    call: grpc.aio.UnaryStreamCall
    updates: list[tuple[str, int, int, float]] = field(default_factory=list)
    responses: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def read(self) -> None:
        async for response in self.call:
            async with self._arrived:
                self.responses += 1
                for update in response.updates:
                    at = update.at.ToNanoseconds() / 1e9
                    self.updates.append((update.auction_id, update.viewer_count, update.unique_viewers, at))
                self._arrived.notify_all()

    def latest(self, auction_id: str) -> tuple[int, int] | None:
        for seen, viewers, unique, _at in reversed(self.updates):
            if seen == auction_id:
                return viewers, unique
        return None

    async def wait_for(self, auction_id: str, viewers: int, unique: int | None = None) -> None:
        def matches() -> bool:
            latest = self.latest(auction_id)
            return latest is not None and latest[0] == viewers and (unique is None or latest[1] == unique)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(matches), WAIT)


def channel_to(gateway: RunningGateway) -> grpc.aio.Channel:
    live = gateway.gateway.live_counts
    assert live is not None
    return grpc.aio.insecure_channel(f"127.0.0.1:{live.port}")


@asynccontextmanager
async def watching(
    channel: grpc.aio.Channel, *auction_ids: str, key: str = TEST_KEY
) -> AsyncIterator[CountStream]:
    call = pb_grpc.LiveCountServiceStub(channel).WatchViewerCounts(
        pb.WatchViewerCountsRequest(auction_ids=list(auction_ids)), metadata=internal_key_metadata(key)
    )
    stream = CountStream(call)
    reader = asyncio.create_task(stream.read())
    try:
        yield stream
    finally:
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_the_stream_starts_with_the_current_counts_and_follows_joins_and_leaves_to_zero(
    tmp_path: Path,
) -> None:
    """Proves the first response carries every asked auction's counts (zero for an empty one), then
    each change of a watched auction arrives, down to zero when the last viewer leaves (the room's own
    viewerCountUpdate is never sent then); an auction not asked for never appears."""
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        first = await gateway.viewer({"auctionId": "a-1", "viewerId": "ann"})
        await first.wait_for(1)
        async with channel_to(gateway) as channel, watching(channel, "a-1", "a-empty") as stream:
            await stream.wait_for("a-1", 1, 1)
            await stream.wait_for("a-empty", 0, 0)
            assert stream.responses == 1
            second = await gateway.viewer({"auctionId": "a-1", "viewerId": "ann"})
            third = await gateway.viewer({"auctionId": "a-1", "viewerId": "bob"})
            other = await gateway.viewer({"auctionId": "a-other"})
            await stream.wait_for("a-1", 3, 2)
            await third.disconnect()
            await stream.wait_for("a-1", 2, 1)
            await first.disconnect()
            await second.disconnect()
            await stream.wait_for("a-1", 0, 0)
            await other.disconnect()
            assert all(auction in ("a-1", "a-empty") for auction, *_ in stream.updates)


async def test_a_join_storm_is_coalesced_to_two_updates_a_second_ending_on_the_truth(tmp_path: Path) -> None:
    """Proves at most one update per auction per 500 ms on a stream (the gateway's stamps ``at`` are at
    least the interval apart) while 40 viewers join as fast as they can, and that the last update once
    they stop is the true count."""
    async with (
        running_gateway(gateway_config(tmp_path)) as gateway,
        channel_to(gateway) as channel,
        watching(channel, "storm") as stream,
    ):
        await stream.wait_for("storm", 0, 0)
        for index in range(40):
            await gateway.viewer({"auctionId": "storm", "viewerId": f"v{index}"})
        await stream.wait_for("storm", 40, 40)
        stamps = [at for auction, _v, _u, at in stream.updates if auction == "storm"]
        gaps = [later - earlier for earlier, later in itertools.pairwise(stamps[1:])]
        # The first gap may be shorter: the stream's first response is not a change.
        assert all(gap >= 0.5 - 0.01 for gap in gaps), gaps
        assert len(stamps) < 40


async def test_a_consumer_that_stops_reading_is_sent_the_latest_counts_not_a_backlog(tmp_path: Path) -> None:
    """Proves that while a consumer does not read, what the gateway keeps for its stream is one entry
    per watched auction (here: 1, after 60 changes), and that the next update it reads is the latest."""
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        live = gateway.gateway.live_counts
        assert live is not None
        async with channel_to(gateway) as channel:
            call = pb_grpc.LiveCountServiceStub(channel).WatchViewerCounts(
                pb.WatchViewerCountsRequest(auction_ids=["slow"]), metadata=internal_key_metadata(TEST_KEY)
            )
            first = await asyncio.wait_for(call.read(), WAIT)
            assert [(u.auction_id, u.viewer_count) for u in first.updates] == [("slow", 0)]
            viewers = [await gateway.viewer({"auctionId": "slow"}) for _ in range(30)]
            for viewer in viewers[:10]:
                await viewer.disconnect()
            feed = gateway.gateway.feed
            assert feed is not None
            assert feed.current("slow").viewer_count == 20
            (watcher,) = feed._by_auction["slow"]
            assert getattr(watcher, "pending", 0) <= 1
            # Reading again: the updates due end on the latest counts, whatever was folded meanwhile.
            while True:
                response = await asyncio.wait_for(call.read(), WAIT)
                assert response is not grpc.aio.EOF
                if response.updates[-1].viewer_count == 20:
                    break
            call.cancel()


@pytest.mark.parametrize(
    ("key", "detail"), [(None, "internal key missing"), ("k" * 32, "internal key not accepted")]
)
async def test_a_call_without_the_internal_key_is_refused(
    tmp_path: Path, key: str | None, detail: str
) -> None:
    """Proves the stream is behind the same internal key as the ingest service's calls."""
    async with running_gateway(gateway_config(tmp_path)) as gateway, channel_to(gateway) as channel:
        call = pb_grpc.LiveCountServiceStub(channel).WatchViewerCounts(
            pb.WatchViewerCountsRequest(auction_ids=["a-1"]),
            metadata=internal_key_metadata(key) if key else None,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), WAIT)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert detail in (refused.value.details() or "")


@pytest.mark.parametrize(
    ("auction_ids", "detail"),
    [
        ([], "name at least one auction"),
        (["ok", "bad id"], "auction id may hold only"),
        ([f"a{n}" for n in range(4)], "at most 3 auctions per stream"),
    ],
)
async def test_a_bad_request_is_refused_with_invalid_argument(
    tmp_path: Path, auction_ids: list[str], detail: str
) -> None:
    config = gateway_config(tmp_path, live_max_auctions_per_stream=3)
    async with running_gateway(config) as gateway, channel_to(gateway) as channel:
        call = pb_grpc.LiveCountServiceStub(channel).WatchViewerCounts(
            pb.WatchViewerCountsRequest(auction_ids=auction_ids), metadata=internal_key_metadata(TEST_KEY)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), WAIT)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert detail in (refused.value.details() or "")


async def test_streams_past_the_limit_are_refused_and_a_closed_one_frees_its_place(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, live_max_streams=2)
    async with running_gateway(config) as gateway, channel_to(gateway) as channel:
        async with watching(channel, "a") as one, watching(channel, "b") as two:
            await one.wait_for("a", 0)
            await two.wait_for("b", 0)
            call = pb_grpc.LiveCountServiceStub(channel).WatchViewerCounts(
                pb.WatchViewerCountsRequest(auction_ids=["c"]), metadata=internal_key_metadata(TEST_KEY)
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(call.read(), WAIT)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as answer:
                assert "gateway_live_count_streams 2\n" in await answer.text()
        live = gateway.gateway.live_counts
        assert live is not None
        await poll(lambda: _true(live.servicer.open_streams == 0), "the closed streams to be released")
        async with watching(channel, "c") as three:
            await three.wait_for("c", 0)


async def _true(value: bool) -> bool:
    return value


async def test_with_redis_a_node_streams_the_clusters_global_counts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves that with REDIS_URL a stream from node B carries the global counts, viewers on node A
    included, and drops to zero when they leave node A."""
    configs = [
        gateway_config(tmp_path / name, redis_url=redis_server.url, node_lease_seconds=2.0, gateway_id=name)
        for name in ("a", "b")
    ]
    for config in configs:
        Path(config.outbox_path).parent.mkdir(parents=True, exist_ok=True)
    async with running_gateway(configs[0]) as node_a, running_gateway(configs[1]) as node_b:
        clusters = [node.gateway.cluster for node in (node_a, node_b)]
        await poll(
            lambda: _true(all(cluster is not None and cluster.ready for cluster in clusters)),
            "both nodes in Redis",
        )
        async with channel_to(node_b) as channel, watching(channel, "global") as stream:
            await stream.wait_for("global", 0, 0)
            on_a = [await node_a.viewer({"auctionId": "global", "viewerId": f"a{n}"}) for n in range(3)]
            on_b = await node_b.viewer({"auctionId": "global", "viewerId": "a0"})
            await stream.wait_for("global", 4, 3)
            await on_b.disconnect()
            for viewer in on_a:
                await viewer.disconnect()
            await stream.wait_for("global", 0, 0)
