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
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from service_common.supervision import Supervisor
from socket_gateway.cluster.node import ClusterNode
from socket_gateway.cluster.relay import CountRelay
from socket_gateway.cluster.store import (
    CHUNK,
    Published,
    RedisClient,
    RedisCounts,
    RoomWrite,
    Sampled,
    Synced,
)
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.feed import ClusterCountPoller, CountFeed
from socket_gateway.live.rooms import RoomCounts, RoomRegistry
from socket_gateway.metrics import GatewayMetrics
from tests.redis_support import RedisBackend, RedisServer, redis_backend, redis_server

__all__ = ["redis_backend", "redis_server"]

WAIT = 10.0


class SimNode:
    """A registry and its node's writes, the way ClusterNode keeps them in step."""

    def __init__(self, store: RedisCounts) -> None:
        self.store = store
        self.registry = RoomRegistry()
        self.synced: dict[str, set[str]] = {}
        self.owned: set[str] = set()

    async def sync(self, rooms: set[str]) -> None:
        writes = []
        for auction_id in sorted(rooms):
            connections, anonymous, viewers = self.registry.contribution(auction_id)
            before = self.synced.get(auction_id, set())
            writes.append(RoomWrite(auction_id, connections, anonymous, viewers - before, before - viewers))
            if connections:
                self.synced[auction_id] = viewers
            else:
                self.synced.pop(auction_id, None)
        for write, synced in zip(writes, await self.store.sync_rooms(writes), strict=True):
            if synced.claimed:
                self.owned.add(write.auction_id)

    async def sample(self, tick: int, minute: int, closes: bool) -> dict[str, Sampled]:
        rooms = sorted(self.owned)
        results = dict(zip(rooms, await self.store.sample(rooms, tick, minute, closes, 100), strict=True))
        gone = [a for a, result in results.items() if result.gone or not result.owned]
        self.owned.difference_update(gone)
        await self.store.disown(gone)
        return results


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
    yield made
    for client in made:
        await client.aclose()


@pytest.fixture
async def any_clients(redis_backend: RedisBackend) -> AsyncIterator[list[RedisClient]]:
    """Three clients on one redis-server, then (the test again) on a 3-master Redis Cluster."""
    made = [redis_backend.client() for _ in range(3)]
    yield made
    for client in made:
        await client.aclose()


async def command_calls(client: RedisClient) -> dict[str, int]:
    """Redis's own count of the commands run since ``CONFIG RESETSTAT``, scripts' included, over every
    shard; CONFIG itself left out."""
    if isinstance(client, RedisCluster):
        per_node = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        stats = [entry for entry in per_node.values()]
    else:
        stats = [await client.info("commandstats")]
    calls: dict[str, int] = {}
    for stat in stats:
        for name, entry in stat.items():
            if not name.startswith("cmdstat_config"):
                calls[name] = calls.get(name, 0) + int(entry["calls"])
    return calls


async def all_keys(client: RedisClient, pattern: str) -> list[str]:
    """The keys matching ``pattern`` on every shard."""
    if isinstance(client, RedisCluster):
        found = await client.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = await client.keys(pattern)
    return sorted(map(_text, found))


async def reset_stats(client: RedisClient) -> None:
    if isinstance(client, RedisCluster):
        await client.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.config_resetstat()


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
    any_clients: list[RedisClient],
) -> None:
    nodes = [SimNode(RedisCounts(client, f"node-{i}", 10)) for i, client in enumerate(any_clients)]
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
    counts = await nodes[0].store.counts_of(auctions)
    for auction_id in auctions:
        want = expected(nodes, auction_id)
        assert counts.get(auction_id, RoomCounts(0, 0)) == want
    assert set(counts) == {a for a in auctions if expected(nodes, a).viewer_count}
    assert sum(c.viewer_count for c in counts.values()) > 0
    # Each room with viewers has exactly one sampling owner among the nodes.
    assert sorted(a for node in nodes for a in node.owned) == sorted(counts)
    for index, sid in sids:
        nodes[index].registry.leave(sid)
    for each in nodes:
        await each.sync(set(auctions))
    assert await nodes[0].store.counts_of(auctions) == {}
    # The owners close the rooms' all-zero minutes, which forgets them.
    for each in nodes:
        await each.sample(1_800_000_060, 1_800_000_000, closes=True)
    # Empty rooms leave nothing behind: Redis state is bounded by the live rooms.
    assert await all_keys(any_clients[0], "va:gw:*") == []


async def test_every_key_of_an_auction_shares_its_slot_and_every_key_of_a_node_its_own(
    any_clients: list[RedisClient],
) -> None:
    nodes = [SimNode(RedisCounts(client, f"node-{i}", 10)) for i, client in enumerate(any_clients[:2])]
    for index, node in enumerate(nodes):
        await node.store.heartbeat()
        node.registry.join(f"s{index}", "a-1", "shared")
        node.registry.join(f"t{index}", "a-2", None)
        await node.sync({"a-1", "a-2"})
    await nodes[0].store.publish_gate("a-1", 300)
    tags = {"a-1": key_slot(b"a-1"), "a-2": key_slot(b"a-2")}
    tags |= {f"n:{node.store.member}": key_slot(f"n:{node.store.member}".encode()) for node in nodes}
    for text in await all_keys(any_clients[0], "va:gw:*"):
        if "{" not in text:
            # The cluster-wide keys: one slot each, never touched by a script with another slot's keys.
            continue
        tag = text[text.index("{") + 1 : text.index("}")]
        # Redis Cluster hashes only the tag: one auction's (or one node's) keys share a slot.
        assert tag in tags, f"{text}: tagged with neither an auction nor a node"
        assert key_slot(text.encode()) == tags[tag]
    room_keys = set(await all_keys(any_clients[0], "va:gw:{a-1}:*"))
    member = nodes[0].store.member
    assert {"va:gw:{a-1}:c", "va:gw:{a-1}:u", f"va:gw:{{a-1}}:v:{member}", "va:gw:{a-1}:last"} <= room_keys


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
    assert (await survivor.store.counts_of(["a-1"]))["a-1"] == RoomCounts(3, 2)
    assert (await survivor.store.reap()).changed == []
    deadline = time.monotonic() + WAIT
    reaped: list[str] = []
    # The lease runs out on Redis's clock; nothing signals it, so poll within a bound.
    while not reaped and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        reaped = (await survivor.store.reap()).changed
    assert reaped == ["a-1"]
    assert (await survivor.store.counts_of(["a-1"]))["a-1"] == RoomCounts(1, 1)
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
    assert (await other.store.counts_of(["a-1"]))["a-1"] == RoomCounts(3, 2)
    # Same GATEWAY_ID after a restart: one of the two viewers reconnected to it.
    after = SimNode(RedisCounts(clients[2], "gw-1", 10))
    after.registry.join("n1", "a-1", "v1")
    changed, _owned = await after.store.replace_all({"a-1": after.registry.contribution("a-1")})
    assert changed == ["a-1"]
    assert (await other.store.counts_of(["a-1"]))["a-1"] == RoomCounts(2, 1)


async def test_one_coordinator_lease_holder_and_its_fencing_token(clients: list[aioredis.Redis]) -> None:
    first = RedisCounts(clients[0], "n1", 0.5)
    second = RedisCounts(clients[1], "n2", 0.5)
    token = await first.sampler_lease()
    assert token > 0
    assert await second.sampler_lease() == 0
    assert await first.sampler_lease() == token
    deadline = time.monotonic() + WAIT
    taken = 0
    while not taken and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        taken = await second.sampler_lease()
    assert taken > token
    assert await first.sampler_lease() == 0


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


async def test_a_leaving_owner_hands_its_rooms_on_and_their_minute_goes_on_with_every_sample(
    any_clients: list[RedisClient],
) -> None:
    owner = SimNode(RedisCounts(any_clients[0], "n1", 10))
    other = SimNode(RedisCounts(any_clients[1], "n2", 10))
    for node in (owner, other):
        await node.store.heartbeat()
    owner.registry.join("s1", "a-1", "v1")
    await owner.sync({"a-1"})
    other.registry.join("s2", "a-1", "v2")
    await other.sync({"a-1"})
    assert (owner.owned, other.owned) == ({"a-1"}, set())
    minute = 1_800_000_000
    await owner.sample(minute + 1, minute, closes=False)
    await owner.sample(minute + 2, minute, closes=False)
    owner.registry.leave("s1")
    changed, live = await owner.store.leave_cluster(0)
    assert (changed, live) == (["a-1"], 1)
    assert (await other.store.counts_of(["a-1"]))["a-1"] == RoomCounts(1, 1)
    # The other node learns on its next heartbeat that the room's sampling is its now.
    assert await other.store.take_inbox() == {"a-1"}
    other.owned.add("a-1")
    # The tick the old owner took is not taken twice; the minute closes with all three samples.
    assert (await other.sample(minute + 2, minute, closes=False))["a-1"].closed == []
    (closed,) = (await other.sample(minute + 3, minute, closes=True))["a-1"].closed
    assert (closed.minute_start, closed.samples, closed.total, closed.peak, closed.minimum) == (
        minute,
        3,
        5,
        2,
        1,
    )
    assert (closed.last, closed.partial) == (RoomCounts(1, 1), False)
    # Nothing of the leaving member is left.
    assert await all_keys(any_clients[0], f"va:gw:{{n:{owner.store.member}}}*") == []


async def test_a_dead_owners_minute_is_closed_by_its_successor_flagged_partial(
    any_clients: list[RedisClient],
) -> None:
    doomed = SimNode(RedisCounts(any_clients[0], "doomed", 0.5))
    survivor = SimNode(RedisCounts(any_clients[1], "survivor", 10))
    for node in (doomed, survivor):
        await node.store.heartbeat()
    doomed.registry.join("d1", "a-1", "v1")
    await doomed.sync({"a-1"})
    survivor.registry.join("s1", "a-1", "v2")
    await survivor.sync({"a-1"})
    minute = 1_800_000_000
    await doomed.sample(minute + 1, minute, closes=False)
    deadline = time.monotonic() + WAIT
    reaped = None
    # The lease runs out on Redis's clock; nothing signals it, so poll within a bound.
    while (reaped is None or not reaped.changed) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        reaped = await survivor.store.reap()
    assert reaped is not None
    # The survivor is the only live member: the room's sampling is its own at once.
    assert reaped.mine == {"a-1"}
    survivor.owned |= reaped.mine
    (closed,) = (await survivor.sample(minute + 5, minute, closes=True))["a-1"].closed
    # The dead owner's sample is kept (no minute lost); the minute is flagged: a node died in it.
    assert (closed.samples, closed.peak, closed.minimum, closed.partial) == (2, 2, 1, True)
    # A sample by the dead owner's old member is refused: only the room's owner closes its minutes.
    assert not (await doomed.store.sample(["a-1"], minute + 6, minute + 5, False, 100))[0].owned


async def test_a_dead_members_rooms_are_reaped_a_bounded_chunk_at_a_time(
    any_clients: list[RedisClient],
) -> None:
    doomed = SimNode(RedisCounts(any_clients[0], "doomed", 10))
    survivor = SimNode(RedisCounts(any_clients[1], "survivor", 10))
    for node in (doomed, survivor):
        await node.store.heartbeat()
    rooms = {f"a-{i}" for i in range(CHUNK * 2 + 10)}
    for index, auction_id in enumerate(sorted(rooms)):
        doomed.registry.join(f"d{index}", auction_id, f"v{index}")
    await doomed.sync(rooms)
    stem = f"va:gw:{{n:{doomed.store.member}}}"
    assert await any_clients[0].scard(f"{stem}:rooms") == len(rooms)
    # One call takes back one chunk of the dead member's rooms, one script per room, never all at once.
    first = await survivor.store.reap_member(doomed.store.member, died=True)
    assert len(first.changed) == CHUNK
    assert first.mine == set(first.changed)
    assert await any_clients[0].scard(f"{stem}:rooms") == len(rooms) - CHUNK
    assert await survivor.store.counts_of(first.changed) == {}
    while not (await survivor.store.reap_member(doomed.store.member, died=True)).done:
        pass
    assert await survivor.store.counts_of(rooms) == {}
    assert await any_clients[0].exists(f"{stem}:rooms", f"{stem}:owned") == 0


async def test_the_poller_reads_only_the_watched_auctions(any_clients: list[RedisClient]) -> None:
    node = SimNode(RedisCounts(any_clients[0], "n1", 10))
    # 300 rooms with one anonymous viewer each.
    await node.store.sync_rooms([RoomWrite(f"a-{i}", 1, 1, set(), set()) for i in range(300)])

    class Ready:
        ready = True
        store = node.store

    class Listener:
        def counts_changed(self, auction_id: str, counts: RoomCounts) -> None:
            heard.append((auction_id, counts))

    heard: list[tuple[str, RoomCounts]] = []
    feed = CountFeed()
    feed.watch(Listener(), ["a-7", "nowhere"])
    poller = ClusterCountPoller(Ready(), feed, 1.0)  # type: ignore[arg-type]
    await reset_stats(any_clients[0])
    await poller.poll_once()
    assert heard == [("a-7", RoomCounts(1, 1))]
    # Redis counts the commands run inside scripts too: the poll read two rooms, not all 300.
    calls = await command_calls(any_clients[0])
    assert sum(calls.values()) <= 4, calls


async def test_the_owner_tells_a_quiet_room_again_after_a_burst_and_once_per_period(
    clients: list[aioredis.Redis],
) -> None:
    node = SimNode(RedisCounts(clients[0], "n1", 10))
    node.store.refresh_ms = 300
    node.registry.join("s1", "a-1", None)
    node.registry.join("s2", "a-2", "v")
    await node.sync({"a-1", "a-2"})
    assert (await node.store.publish_gate("a-1", 100)).counts == RoomCounts(1, 1)
    tick = iter(range(1_800_000_001, 1_800_000_060))

    async def told() -> set[str]:
        return {
            a for a, result in (await node.sample(next(tick), 1_800_000_000, False)).items() if result.publish
        }

    # a-1 was just told; a-2 never was.
    assert await told() == {"a-2"}
    assert await told() == set()
    # a-1 is told again once quiet for four intervals after its publish, a-2 once the refresh period
    # has passed (nothing signals either: wait them out).
    await asyncio.sleep(0.31)
    assert await told() == {"a-2"}
    await asyncio.sleep(0.1)
    assert await told() == {"a-1"}


async def test_a_sync_asks_the_rooms_gate_in_the_same_script(clients: list[aioredis.Redis]) -> None:
    node = SimNode(RedisCounts(clients[0], "n1", 10))
    node.registry.join("s1", "a-1", "v1")
    node.registry.join("s2", "a-2", None)
    _c, _a, viewers = node.registry.contribution("a-1")
    writes = [
        RoomWrite("a-1", 1, 0, viewers, set(), ask_gate=True),
        RoomWrite("a-2", 1, 1, set(), set(), ask_gate=False),
    ]
    (first, decided, _), (second, not_asked, _) = await node.store.sync_rooms(writes, 300)
    assert (first, decided) == (RoomCounts(1, 1), Published(RoomCounts(1, 1), None))
    assert (second, not_asked) == (RoomCounts(1, 1), None)
    # The lock taken by that publish holds the next write's gate for the rest of the interval.
    ((_, held, _),) = await node.store.sync_rooms([RoomWrite("a-1", 1, 0, set(), set(), True)], 300)
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

    async def sync_rooms(self, rooms: list[RoomWrite], interval_ms: int = 0) -> list[Synced]:
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
        assert (await store.counts_of(["a-1"]))["a-1"] == RoomCounts(1, 1)
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
        assert (await store.counts_of(["a-1"]))["a-1"] == RoomCounts(1, 1)
    finally:
        await node.close()
        await supervisor.stop()
