"""The cluster's Redis state (socket_gateway.cluster.store.RedisCounts) against a real redis-server.

Several nodes are simulated in one process, each with its own registry and its own Redis client,
as separate gateway processes would be.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from service_common.supervision import Supervisor
from socket_gateway.cluster.node import ClusterNode
from socket_gateway.cluster.relay import CountRelay
from socket_gateway.cluster.store import Published, RedisCounts, RoomWrite
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.rooms import RoomCounts, RoomRegistry
from socket_gateway.metrics import GatewayMetrics
from tests.redis_support import RedisServer, redis_server

__all__ = ["redis_server"]

WAIT = 10.0


class SimNode:
    """A registry and its node's writes, the way ClusterNode keeps them in step."""

    def __init__(self, store: RedisCounts) -> None:
        self.store = store
        self.registry = RoomRegistry()
        self.synced: dict[str, set[str]] = {}

    async def sync(self, rooms: set[str]) -> None:
        writes = []
        for auction_id in rooms:
            connections, anonymous, viewers = self.registry.contribution(auction_id)
            before = self.synced.get(auction_id, set())
            writes.append(RoomWrite(auction_id, connections, anonymous, viewers - before, before - viewers))
            self.synced[auction_id] = viewers
        await self.store.sync_rooms(writes)


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
    yield made
    for client in made:
        await client.aclose()


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


def expected(nodes: list[SimNode], auction_id: str) -> RoomCounts:
    connections = sum(node.registry.counts(auction_id).viewer_count for node in nodes)
    viewers: set[str] = set()
    anonymous = 0
    for node in nodes:
        _c, anon, ids = node.registry.contribution(auction_id)
        viewers |= ids
        anonymous += anon
    return RoomCounts(connections, len(viewers) + anonymous)


async def test_global_counts_are_exact_under_random_churn_across_three_nodes(
    clients: list[aioredis.Redis],
) -> None:
    nodes = [SimNode(RedisCounts(client, f"node-{i}", 10)) for i, client in enumerate(clients)]
    rng = random.Random(6)
    auctions = ["a-1", "a-2", "a-3"]
    sids: list[tuple[int, str]] = []
    for step in range(1500):
        node_index = rng.randrange(3)
        node = nodes[node_index]
        if sids and rng.random() < 0.45:
            index, sid = sids.pop(rng.randrange(len(sids)))
            left = nodes[index].registry.leave(sid)
            changed = {left} if left else set()
            node = nodes[index]
        else:
            sid = f"s{step}"
            viewer = rng.choice([None, "v1", "v2", "v3", f"v{step}"])
            auction_id = rng.choice(auctions)
            left, _ = node.registry.join(sid, auction_id, viewer)
            sids.append((node_index, sid))
            changed = {auction_id} | ({left} if left else set())
        if rng.random() < 0.3 or step == 1499:
            # Nodes write in batches, as the sync task does under churn.
            for each in nodes:
                await each.sync(set(auctions))
        elif changed:
            await node.sync(changed)
    for each in nodes:
        await each.sync(set(auctions))
    counts = await nodes[0].store.all_counts()
    for auction_id in auctions:
        want = expected(nodes, auction_id)
        assert counts.get(auction_id, RoomCounts(0, 0)) == want
    assert set(counts) == {a for a in auctions if expected(nodes, a).viewer_count}
    assert sum(c.viewer_count for c in counts.values()) > 0
    for index, sid in sids:
        nodes[index].registry.leave(sid)
    for each in nodes:
        await each.sync(set(auctions))
    assert await nodes[0].store.all_counts() == {}
    # Empty rooms leave nothing behind: Redis state is bounded by the live rooms.
    assert await clients[0].keys("va:gw:*") == []


async def test_every_key_of_an_auction_shares_its_slot_and_every_key_of_a_node_its_own(
    clients: list[aioredis.Redis],
) -> None:
    nodes = [SimNode(RedisCounts(client, f"node-{i}", 10)) for i, client in enumerate(clients[:2])]
    for index, node in enumerate(nodes):
        await node.store.heartbeat()
        node.registry.join(f"s{index}", "a-1", "shared")
        node.registry.join(f"t{index}", "a-2", None)
        await node.sync({"a-1", "a-2"})
    await nodes[0].store.publish_gate("a-1", 300)
    tags = {"a-1": key_slot(b"a-1"), "a-2": key_slot(b"a-2")}
    tags |= {f"n:node-{i}": key_slot(f"n:node-{i}".encode()) for i in range(2)}
    for text in map(_text, await clients[0].keys("va:gw:*")):
        if "{" not in text:
            # The cluster-wide keys: one slot each, never touched by a script with another slot's keys.
            continue
        tag = text[text.index("{") + 1 : text.index("}")]
        # Redis Cluster hashes only the tag: one auction's (or one node's) keys share a slot.
        assert tag in tags, f"{text}: tagged with neither an auction nor a node"
        assert key_slot(text.encode()) == tags[tag]
    room_keys = {_text(k) for k in await clients[0].keys("va:gw:{a-1}:*")}
    assert {"va:gw:{a-1}:c", "va:gw:{a-1}:u", "va:gw:{a-1}:v:node-0", "va:gw:{a-1}:last"} <= room_keys


async def test_a_dead_node_is_reaped_by_a_survivor_once_its_lease_expires(
    clients: list[aioredis.Redis],
) -> None:
    survivor = SimNode(RedisCounts(clients[0], "survivor", 10))
    doomed = SimNode(RedisCounts(clients[1], "doomed", 0.5))
    for node in (survivor, doomed):
        await node.store.heartbeat()
    survivor.registry.join("s1", "a-1", "shared")
    doomed.registry.join("d1", "a-1", "shared")
    doomed.registry.join("d2", "a-1", None)
    for node in (survivor, doomed):
        await node.sync({"a-1"})
    assert (await survivor.store.all_counts())["a-1"] == RoomCounts(3, 2)
    assert await survivor.store.reap() == []
    deadline = time.monotonic() + WAIT
    reaped: list[str] = []
    # The lease runs out on Redis's clock; nothing signals it, so poll within a bound.
    while not reaped and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        reaped = await survivor.store.reap()
    assert reaped == ["a-1"]
    assert (await survivor.store.all_counts())["a-1"] == RoomCounts(1, 1)
    # The reaped node comes back: its heartbeat says its lease lapsed, so it must write again.
    valid, live = await doomed.store.heartbeat()
    assert (valid, live) == (False, 2)


async def test_a_restarted_node_replaces_its_old_contribution_instead_of_adding_to_it(
    clients: list[aioredis.Redis],
) -> None:
    before = SimNode(RedisCounts(clients[0], "gw-1", 10))
    before.registry.join("s1", "a-1", "v1")
    before.registry.join("s2", "a-1", None)
    await before.store.replace_all({"a-1": before.registry.contribution("a-1")})
    other = SimNode(RedisCounts(clients[1], "gw-2", 10))
    other.registry.join("o1", "a-1", "v1")
    await other.sync({"a-1"})
    assert (await other.store.all_counts())["a-1"] == RoomCounts(3, 2)
    # Same GATEWAY_ID after a restart: one of the two viewers reconnected to it.
    after = SimNode(RedisCounts(clients[2], "gw-1", 10))
    after.registry.join("n1", "a-1", "v1")
    await after.store.replace_all({"a-1": after.registry.contribution("a-1")})
    assert (await other.store.all_counts())["a-1"] == RoomCounts(2, 1)


async def test_one_sampler_lease_holder_and_its_fencing_token(clients: list[aioredis.Redis]) -> None:
    first = RedisCounts(clients[0], "n1", 0.5)
    second = RedisCounts(clients[1], "n2", 0.5)
    token, _ = await first.sampler_lease()
    assert token > 0
    assert await second.sampler_lease() == (0, 0)
    assert await first.sampler_lease() == (token, 0)
    assert (await first.fence(token))[0] is True
    deadline = time.monotonic() + WAIT
    taken = 0
    while not taken and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        taken, _ = await second.sampler_lease()
    assert taken > token
    # The old holder's token no longer passes the fence: its snapshots must not be queued.
    assert (await first.fence(token))[0] is False
    assert (await second.fence(taken))[0] is True


async def test_publish_gate_lets_one_update_per_interval_and_never_repeats_a_value(
    clients: list[aioredis.Redis],
) -> None:
    one = SimNode(RedisCounts(clients[0], "n1", 10))
    two = SimNode(RedisCounts(clients[1], "n2", 10))
    one.registry.join("s1", "a-1", None)
    await one.sync({"a-1"})
    first = await one.store.publish_gate("a-1", 300)
    assert first.counts == RoomCounts(1, 1)
    two.registry.join("s2", "a-1", None)
    await two.sync({"a-1"})
    held = await two.store.publish_gate("a-1", 300)
    assert held.counts is None
    assert held.retry_after is not None
    assert 0 < held.retry_after <= 0.3
    await asyncio.sleep(held.retry_after)
    second = await two.store.publish_gate("a-1", 300)
    assert second.counts == RoomCounts(2, 2)
    await asyncio.sleep(0.31)
    unchanged = await one.store.publish_gate("a-1", 300)
    assert (unchanged.counts, unchanged.retry_after) == (None, None)
    # A settling call re-publishes the unchanged counts once (an overtaken emit is corrected), then not again.
    settled = await one.store.publish_gate("a-1", 300, settle=True)
    assert settled.counts == RoomCounts(2, 2)
    await asyncio.sleep(0.31)
    again = await two.store.publish_gate("a-1", 300, settle=True)
    assert (again.counts, again.retry_after) == (None, None)


async def test_a_stopping_leader_records_the_interval_it_closed_as_it_gives_the_lease_up(
    clients: list[aioredis.Redis],
) -> None:
    leader = SimNode(RedisCounts(clients[0], "n1", 10))
    other = SimNode(RedisCounts(clients[1], "n2", 10))
    for node in (leader, other):
        await node.store.heartbeat()
    leader.registry.join("s1", "a-1", "v1")
    other.registry.join("s2", "a-1", "v2")
    for node in (leader, other):
        await node.sync({"a-1"})
    token, _ = await leader.store.sampler_lease()
    assert await other.store.sampler_lease() == (0, 0)
    changed, live = await leader.store.leave_cluster(token, closed_interval=1_800_000_060)
    assert (changed, live) == (["a-1"], 1)
    assert (await other.store.all_counts())["a-1"] == RoomCounts(1, 1)
    # The next leader learns, with the lease, which interval it must not send again.
    taken, handed_over = await other.store.sampler_lease()
    assert taken > token
    assert handed_over == 1_800_000_060
    # A node that does not hold the lease records nothing.
    await other.store.leave_cluster(0, closed_interval=1_800_000_120)
    assert (await leader.store.sampler_lease())[1] == 1_800_000_060


async def test_refresh_tells_a_room_again_after_a_burst_and_once_per_period(
    clients: list[aioredis.Redis],
) -> None:
    node = SimNode(RedisCounts(clients[0], "n1", 10))
    node.store.refresh_ms = 300
    node.registry.join("s1", "a-1", None)
    node.registry.join("s2", "a-2", "v")
    await node.sync({"a-1", "a-2"})
    assert (await node.store.publish_gate("a-1", 100)).counts == RoomCounts(1, 1)
    # a-1 was just told; a-2 never was.
    assert await node.store.refresh(100) == {"a-2": RoomCounts(1, 1)}
    assert await node.store.refresh(100) == {}
    # a-1 is told again once quiet for four intervals after its publish, a-2 once the refresh period
    # has passed (nothing signals either: wait them out).
    await asyncio.sleep(0.31)
    assert await node.store.refresh(100) == {"a-2": RoomCounts(1, 1)}
    await asyncio.sleep(0.1)
    assert await node.store.refresh(100) == {"a-1": RoomCounts(1, 1)}


async def test_a_sync_asks_the_rooms_gate_in_the_same_script(clients: list[aioredis.Redis]) -> None:
    node = SimNode(RedisCounts(clients[0], "n1", 10))
    node.registry.join("s1", "a-1", "v1")
    node.registry.join("s2", "a-2", None)
    _c, _a, viewers = node.registry.contribution("a-1")
    writes = [
        RoomWrite("a-1", 1, 0, viewers, set(), ask_gate=True),
        RoomWrite("a-2", 1, 1, set(), set(), ask_gate=False),
    ]
    (first, decided), (second, not_asked) = await node.store.sync_rooms(writes, 300)
    assert (first, decided) == (RoomCounts(1, 1), Published(RoomCounts(1, 1), None))
    assert (second, not_asked) == (RoomCounts(1, 1), None)
    # The lock taken by that publish holds the next write's gate for the rest of the interval.
    ((_, held),) = await node.store.sync_rooms([RoomWrite("a-1", 1, 0, set(), set(), True)], 300)
    assert held is not None
    assert held.counts is None
    assert held.retry_after is not None
    assert 0 < held.retry_after <= 0.3


class HeldSyncs(RedisCounts):
    """A node's Redis state whose sync batches wait for ``go`` while ``hold`` is set (a slow round trip)."""

    def __init__(self, client: aioredis.Redis, node_id: str) -> None:
        super().__init__(client, node_id, 10)
        self.hold = False
        self.held = asyncio.Event()
        self.go = asyncio.Event()

    async def sync_rooms(
        self, rooms: list[RoomWrite], interval_ms: int = 0
    ) -> list[tuple[RoomCounts, Published | None]]:
        if self.hold:
            self.held.set()
            await self.go.wait()
        return await super().sync_rooms(rooms, interval_ms)


async def test_a_resync_waits_for_the_sync_batch_in_flight(clients: list[aioredis.Redis]) -> None:
    store = HeldSyncs(clients[0], "n1")
    registry = RoomRegistry()

    async def publish(auction_id: str, counts: RoomCounts) -> None:
        pass

    relay = CountRelay(clients[0], "n1", registry, publish, publish, GatewayMetrics())
    node = ClusterNode(store, registry, relay, CountBroadcaster(registry, publish, 0.1), 0.1, 10, time.time)
    registry.join("s1", "a-1", None)
    supervisor = Supervisor()
    await node.start(supervisor)
    await asyncio.wait_for(node.wait_synced(), WAIT)
    try:
        # A batch reads two sockets, then stalls on its way to Redis; meanwhile one leaves again.
        store.hold = True
        registry.join("s2", "a-1", None)
        node.room_changed("a-1")
        await asyncio.wait_for(store.held.wait(), WAIT)
        registry.leave("s2")
        # The heartbeat's re-sync (its lease lapsed) must not overtake the batch: if it did, the
        # batch would land last and leave two sockets in Redis for good.
        resync = asyncio.create_task(node.rooms.resync())
        done, _ = await asyncio.wait({resync}, timeout=0.2)
        assert not done, "the re-sync wrote while a batch read before it was still in flight"
        store.go.set()
        await asyncio.wait_for(resync, WAIT)
        assert (await store.all_counts())["a-1"] == RoomCounts(1, 1)
    finally:
        await node.close()
        await supervisor.stop()


class HeartbeatFailsOnce(RedisCounts):
    """A node's Redis state whose first heartbeat fails with something that is not a Redis error (a
    reply the node did not expect): the kind of failure the node's own Redis handling does not cover."""

    def __init__(self, client: aioredis.Redis, node_id: str) -> None:
        super().__init__(client, node_id, 10)
        self.failures_left = 1

    async def heartbeat(self) -> tuple[bool, int]:
        if self.failures_left:
            self.failures_left -= 1
            raise ValueError("unexpected reply from Redis")
        return await super().heartbeat()


async def test_a_heartbeat_that_fails_unexpectedly_is_restarted_and_counted(
    clients: list[aioredis.Redis],
) -> None:
    store = HeartbeatFailsOnce(clients[0], "n1")
    registry = RoomRegistry()

    async def publish(auction_id: str, counts: RoomCounts) -> None:
        pass

    relay = CountRelay(clients[0], "n1", registry, publish, publish, GatewayMetrics())
    node = ClusterNode(store, registry, relay, CountBroadcaster(registry, publish, 0.1), 0.1, 10, time.time)
    supervisor = Supervisor(initial_backoff_seconds=0.01)
    registry.join("s1", "a-1", None)
    await node.start(supervisor)
    try:
        # Before supervision the heartbeat task died here for good and the node never joined.
        await asyncio.wait_for(node.wait_synced(), WAIT)
        (heartbeat,) = [task for task in supervisor.health() if task.name == "cluster-heartbeat"]
        assert heartbeat.failures_total == 1
        assert heartbeat.last_error == "ValueError: unexpected reply from Redis"
        assert (await store.all_counts())["a-1"] == RoomCounts(1, 1)
    finally:
        await node.close()
        await supervisor.stop()
