"""Many gateway nodes as one on Redis: global exact counts, node leases, coalesced updates, a sampler lease.

Every node keeps its own sockets in its ``RoomRegistry`` (the local truth) and writes its
contribution to each room into Redis; the global counts are the sum over live nodes, read from
Redis, never by asking the other nodes. Key layout (``p`` is the prefix):

- ``p:nodes`` — sorted set, node id → lease expiry (ms, Redis clock), refreshed by each node's heartbeat;
- ``p:r:{a}:c`` / ``p:r:{a}:a`` — hashes node → connections / anonymous connections in room ``a``;
- ``p:r:{a}:u`` — hash viewer id → how many nodes hold that viewer in ``a`` (its length is the
  number of distinct identified viewers);
- ``p:n:{node}:rooms`` and ``p:n:{node}:v:{a}`` — what a node contributed, so it can be taken back;
- ``p:rooms`` — rooms with any connection; ``p:r:{a}:last`` / ``p:r:{a}:lock`` / ``p:r:{a}:fresh`` —
  the last published counts, the per-room publish lock and a marker that the room was told its counts
  recently; ``p:sampler`` / ``p:sampler_token`` — the sampler lease and its fencing token;
  ``p:last_death`` — when survivors last reaped a dead node; ``p:handed_over`` — the latest interval a
  stopping leader closed itself (the next leader must not send it again).

All updates are Lua scripts, so each is atomic. The scripts compute key names from the prefix,
which a single Redis (or a primary with replicas, or Sentinel) allows; Redis Cluster does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from service_common.supervision import Supervisor
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.rooms import RoomCounts, RoomRegistry
from socket_gateway.snapshots.aggregation import MinuteSnapshot

logger = logging.getLogger(__name__)

PREFIX = "va:gw:"
# After a publish, once a room has had no publish for this many intervals, the sampler leader tells it
# its counts once more (see _REFRESH): the end of every burst is re-told by one node, after every
# node's emits of the burst have had time to land.
QUIET_INTERVALS = 4
# Errors that mean "Redis is unreachable or failing": the node falls back to its local counts.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)

_LUA_COMMON = """
local function room_counts(p, a)
  local rk = p .. 'r:' .. a
  local conn, anon = 0, 0
  for _, v in ipairs(redis.call('HVALS', rk .. ':c')) do conn = conn + tonumber(v) end
  for _, v in ipairs(redis.call('HVALS', rk .. ':a')) do anon = anon + tonumber(v) end
  local uniq = redis.call('HLEN', rk .. ':u') + anon
  if conn == 0 then
    redis.call('SREM', p .. 'rooms', a)
    redis.call('DEL', rk .. ':c', rk .. ':a', rk .. ':u', rk .. ':last', rk .. ':settled', rk .. ':fresh')
  else
    redis.call('SADD', p .. 'rooms', a)
  end
  return {conn, uniq}
end
local function clear_node(p, node)
  local rooms = redis.call('SMEMBERS', p .. 'n:' .. node .. ':rooms')
  for _, a in ipairs(rooms) do
    local rk = p .. 'r:' .. a
    local mine = p .. 'n:' .. node .. ':v:' .. a
    redis.call('HDEL', rk .. ':c', node)
    redis.call('HDEL', rk .. ':a', node)
    for _, v in ipairs(redis.call('SMEMBERS', mine)) do
      if redis.call('HINCRBY', rk .. ':u', v, -1) <= 0 then redis.call('HDEL', rk .. ':u', v) end
    end
    redis.call('DEL', mine)
    room_counts(p, a)
  end
  redis.call('DEL', p .. 'n:' .. node .. ':rooms')
  return rooms
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The publish gate: {1, conn, uniq}: publish these; {0}: nothing new; {-1, wait ms}: another publish
-- holds the room's interval, try again after it. A settling call publishes the counts once more even
-- when unchanged, once per burst of updates (see ClusterNode). counts: the room's, if just computed.
local function gate(p, a, node, interval, settle, period, counts)
  local rk = p .. 'r:' .. a
  local wait = redis.call('PTTL', rk .. ':lock')
  if wait > 0 then return {-1, wait} end
  counts = counts or room_counts(p, a)
  if counts[1] == 0 then return {0} end
  local value = counts[1] .. ':' .. counts[2]
  local settled = redis.call('EXISTS', rk .. ':settled') == 1
  if redis.call('GET', rk .. ':last') == value and (settled or not settle) then return {0} end
  redis.call('SET', rk .. ':last', value)
  if settle then redis.call('SET', rk .. ':settled', 1) else redis.call('DEL', rk .. ':settled') end
  redis.call('SET', rk .. ':lock', node, 'PX', interval)
  redis.call('SET', rk .. ':fresh', 1, 'PX', period)
  return {1, counts[1], counts[2]}
end
"""

# ARGV: prefix, node, auction, connections, anonymous, gate (0/1), interval ms, refresh period ms,
# n_added, added viewer ids..., removed viewer ids.... {conn, uniq, the gate's answer (as _PUBLISH_GATE)
# when asked}: writing a room and asking its gate is one script, so one round trip per batch of rooms.
_SYNC = (
    _LUA_COMMON
    + """
local p, node, a = ARGV[1], ARGV[2], ARGV[3]
local conn, anon, ask = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local interval, period, nadd = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local rk = p .. 'r:' .. a
local mine = p .. 'n:' .. node .. ':v:' .. a
if conn > 0 then redis.call('HSET', rk .. ':c', node, conn) else redis.call('HDEL', rk .. ':c', node) end
if anon > 0 then redis.call('HSET', rk .. ':a', node, anon) else redis.call('HDEL', rk .. ':a', node) end
for i = 10, 9 + nadd do
  if redis.call('SADD', mine, ARGV[i]) == 1 then redis.call('HINCRBY', rk .. ':u', ARGV[i], 1) end
end
for i = 10 + nadd, #ARGV do
  if redis.call('SREM', mine, ARGV[i]) == 1 then
    if redis.call('HINCRBY', rk .. ':u', ARGV[i], -1) <= 0 then redis.call('HDEL', rk .. ':u', ARGV[i]) end
  end
end
if conn > 0 then
  redis.call('SADD', p .. 'n:' .. node .. ':rooms', a)
else
  redis.call('SREM', p .. 'n:' .. node .. ':rooms', a)
end
local counts = room_counts(p, a)
if not ask then return counts end
local decision = gate(p, a, node, interval, false, period, counts)
-- {conn, uniq, 1}: publish these; {conn, uniq, 0}; {conn, uniq, -1, wait ms}
return {counts[1], counts[2], decision[1], decision[1] == -1 and decision[2] or 0}
"""
)

# ARGV: prefix, node, lease ms. {1 if the node's lease was still valid, 0 if it had lapsed or been
# reaped (its contributions may be gone: the node must write them all again); live nodes}.
_HEARTBEAT = (
    _LUA_COMMON
    + """
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local prev = redis.call('ZSCORE', p .. 'nodes', node)
redis.call('ZADD', p .. 'nodes', now + ttl, node)
local live = redis.call('ZCOUNT', p .. 'nodes', now, '+inf')
if prev and tonumber(prev) >= now then return {1, live} end
return {0, live}
"""
)

# ARGV: prefix. Removes every node whose lease expired; returns the rooms whose counts changed.
_REAP = (
    _LUA_COMMON
    + """
local p = ARGV[1]
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', p .. 'nodes', '-inf', now)
local changed = {}
for _, node in ipairs(dead) do
  for _, a in ipairs(clear_node(p, node)) do table.insert(changed, a) end
  redis.call('ZREM', p .. 'nodes', node)
  redis.call('SET', p .. 'last_death', now)
end
return changed
"""
)

# ARGV: prefix, node, lease ms (0: leave the node set). Takes back all of the node's contributions.
_RESET = (
    _LUA_COMMON
    + """
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rooms = clear_node(p, node)
for _, a in ipairs(rooms) do redis.call('DEL', p .. 'r:' .. a .. ':last') end
if ttl > 0 then
  redis.call('ZADD', p .. 'nodes', now_ms() + ttl, node)
else
  redis.call('ZREM', p .. 'nodes', node)
end
return rooms
"""
)

# ARGV: prefix, auction, node, interval ms, settle (0/1), refresh period ms. The gate's answer (above).
_PUBLISH_GATE = (
    _LUA_COMMON
    + """
local p, a, node = ARGV[1], ARGV[2], ARGV[3]
return gate(p, a, node, tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]))
"""
)

# ARGV: prefix, node, interval ms, refresh period ms. {auction, conn, uniq, ...}: rooms not told their
# counts lately (and not inside a publish interval), to be told them again now. Run by the sampler
# leader on its heartbeat. A publish marks its room fresh for QUIET_INTERVALS intervals, a refresh for
# the period (a lease): so a burst of updates ends with one more from the leader once the room is
# quiet, and a quiet room is told again once per lease, through the same lock as every publish. Emits
# from different nodes can overtake each other on the way to a room (one delayed on a busy node), and
# a node's pub/sub can miss updates (python-socketio's listener re-subscribes on a backoff after Redis
# returns): either way the room ends on the truth.
_REFRESH = (
    _LUA_COMMON
    + """
local p, node, interval, period = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', p .. 'rooms')) do
  local rk = p .. 'r:' .. a
  if redis.call('EXISTS', rk .. ':lock') == 0 and redis.call('EXISTS', rk .. ':fresh') == 0 then
    local c = room_counts(p, a)
    if c[1] > 0 then
      redis.call('SET', rk .. ':last', c[1] .. ':' .. c[2])
      redis.call('SET', rk .. ':settled', 1)
      redis.call('SET', rk .. ':lock', node, 'PX', interval)
      redis.call('SET', rk .. ':fresh', 1, 'PX', period)
      table.insert(out, a); table.insert(out, c[1]); table.insert(out, c[2])
    end
  end
end
return out
"""
)

# ARGV: prefix, node, lease ms. {the token while this node holds (or just took) the sampler lease, else
# 0; the latest interval a stopping leader closed itself (0: none)}.
_SAMPLER_LEASE = """
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local handed = tonumber(redis.call('GET', p .. 'handed_over') or '0')
local cur = redis.call('GET', p .. 'sampler')
if cur then
  local holder, token = string.match(cur, '^(.*)|(%d+)$')
  if holder == node then
    redis.call('PEXPIRE', p .. 'sampler', ttl)
    return {tonumber(token), handed}
  end
  return {0, handed}
end
local token = redis.call('INCR', p .. 'sampler_token')
redis.call('SET', p .. 'sampler', node .. '|' .. token, 'PX', ttl)
return {token, handed}
"""

# ARGV: prefix, node, token. {1 if the lease is still this node's with this token, last death ms}.
_FENCE = """
local p = ARGV[1]
local ok = 0
if redis.call('GET', p .. 'sampler') == ARGV[2] .. '|' .. ARGV[3] then ok = 1 end
return {ok, tonumber(redis.call('GET', p .. 'last_death') or '0')}
"""

# ARGV: prefix. {auction, conn, uniq, ...} for every room with a connection on a live node.
_ALL_COUNTS = (
    _LUA_COMMON
    + """
local p = ARGV[1]
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', p .. 'rooms')) do
  local c = room_counts(p, a)
  if c[1] > 0 then
    table.insert(out, a); table.insert(out, c[1]); table.insert(out, c[2])
  end
end
return out
"""
)

# ARGV: prefix, node, token, interval closed by this node (0: none). Gives the sampler lease up if
# this node holds it, recording the interval it closed in the same step: no next leader can take the
# lease without seeing it. The live nodes left.
_RELEASE = """
if redis.call('GET', ARGV[1] .. 'sampler') == ARGV[2] .. '|' .. ARGV[3] then
  redis.call('DEL', ARGV[1] .. 'sampler')
  local closed = tonumber(ARGV[4])
  if closed > tonumber(redis.call('GET', ARGV[1] .. 'handed_over') or '0') then
    redis.call('SET', ARGV[1] .. 'handed_over', closed)
  end
end
local now = redis.call('TIME')
return redis.call('ZCOUNT', ARGV[1] .. 'nodes', tonumber(now[1]) * 1000, '+inf')
"""


@dataclass(frozen=True, slots=True)
class Published:
    """What the publish gate decided for one room."""

    counts: RoomCounts | None  # publish these to the room on every node
    retry_after: float | None  # seconds until the room's interval ends, when another publish holds it


class RoomWrite(NamedTuple):
    """One room in a sync batch: this node's contribution and what changed since its last write."""

    auction_id: str
    connections: int
    anonymous: int
    added: set[str]  # viewer ids
    removed: set[str]
    ask_gate: bool = False  # whether to ask the room's publish gate in the same script


def _published(reply: list[int]) -> Published:
    """A publish gate's answer, from ``{1, conn, uniq}``, ``{0}`` or ``{-1, wait ms}``."""
    if reply[0] == 1:
        return Published(RoomCounts(int(reply[1]), int(reply[2])), None)
    if reply[0] == -1:
        return Published(None, int(reply[1]) / 1000)
    return Published(None, None)


class RedisCounts:
    """One node's view of the shared Redis state; every method is one round trip (or one pipeline).

    Methods raise one of ``REDIS_FAILURES`` when Redis is unreachable; the caller decides how to
    degrade.
    """

    def __init__(self, client: aioredis.Redis, node_id: str, lease_seconds: float, prefix: str = PREFIX):
        self.client = client
        self.node_id = node_id
        self.lease_ms = int(lease_seconds * 1000)
        # A quiet room is told its counts again once per lease (see _REFRESH).
        self.refresh_ms = self.lease_ms
        self.prefix = prefix
        self._sync = client.register_script(_SYNC)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._reap = client.register_script(_REAP)
        self._reset = client.register_script(_RESET)
        self._gate = client.register_script(_PUBLISH_GATE)
        self._lease = client.register_script(_SAMPLER_LEASE)
        self._fence = client.register_script(_FENCE)
        self._all = client.register_script(_ALL_COUNTS)
        self._release = client.register_script(_RELEASE)
        self._refresh = client.register_script(_REFRESH)

    @staticmethod
    def _counts(reply: list[int]) -> RoomCounts:
        return RoomCounts(int(reply[0]), int(reply[1]))

    async def sync_rooms(
        self, rooms: list[RoomWrite], interval_ms: int = 0
    ) -> list[tuple[RoomCounts, Published | None]]:
        """Writes this node's contribution to each room in one pipeline; each room's global counts, and
        its publish gate's answer for the rooms that asked (``interval_ms``: the publish interval).
        """
        for attempt in range(2):
            try:
                # EVALSHA straight into the pipeline: running the Script object in a pipeline would
                # make redis-py send a SCRIPT EXISTS round trip before every batch.
                async with self.client.pipeline(transaction=False) as pipe:
                    for room in rooms:
                        pipe.evalsha(
                            self._sync.sha,
                            0,
                            *(self.prefix, self.node_id, room.auction_id, room.connections, room.anonymous),
                            *(
                                int(room.ask_gate),
                                interval_ms,
                                QUIET_INTERVALS * interval_ms,
                                len(room.added),
                            ),
                            *room.added,
                            *room.removed,
                        )
                    replies = await pipe.execute()
                break
            except NoScriptError:
                # Redis restarted (or its script cache was flushed): nothing in the batch ran. A gate
                # that was asked did not run either; the writes are absolute or set-guarded, so
                # loading the script and re-sending is safe.
                if attempt:
                    raise
                await self.client.script_load(_SYNC)
        out: list[tuple[RoomCounts, Published | None]] = []
        for room, reply in zip(rooms, replies, strict=True):
            counts = self._counts(reply)
            if not room.ask_gate:
                out.append((counts, None))
            elif reply[2] == 1:
                out.append((counts, Published(counts, None)))
            else:
                out.append((counts, _published(reply[2:])))
        return out

    async def replace_all(self, rooms: dict[str, tuple[int, int, set[str]]]) -> None:
        """Atomically takes back everything this node wrote and writes ``rooms`` instead (start, re-sync)."""
        async with self.client.pipeline(transaction=True) as pipe:
            await self._reset(args=[self.prefix, self.node_id, self.lease_ms], client=pipe)
            for auction_id, (connections, anonymous, viewers) in rooms.items():
                await self._sync(
                    args=[
                        self.prefix,
                        self.node_id,
                        auction_id,
                        connections,
                        anonymous,
                        0,  # the gate is asked after the transaction, by the publish task
                        0,
                        0,
                        len(viewers),
                        *viewers,
                    ],
                    client=pipe,
                )
            await pipe.execute()

    async def heartbeat(self) -> tuple[bool, int]:
        """Refreshes the node's lease: whether it was still valid (if not, the node must write its state
        again), and how many nodes are live."""
        valid, live = await self._heartbeat(args=[self.prefix, self.node_id, self.lease_ms])
        return bool(valid), int(live)

    async def reap(self) -> list[str]:
        """Takes back the contributions of every node whose lease expired; the rooms that changed."""
        return [_text(a) for a in await self._reap(args=[self.prefix])]

    async def leave_cluster(self, sampler_token: int, closed_interval: int = 0) -> tuple[list[str], int]:
        """Takes this node's contributions back and gives up its sampler lease, recording the interval it
        closed itself (``closed_interval``, 0: none); the rooms that changed and the live nodes left."""
        rooms = await self._reset(args=[self.prefix, self.node_id, 0])
        live = await self._release(args=[self.prefix, self.node_id, sampler_token, closed_interval])
        return [_text(a) for a in rooms], int(live)

    async def publish_gate(self, auction_id: str, interval_ms: int, settle: bool = False) -> Published:
        return _published(
            await self._gate(
                args=[
                    *(self.prefix, auction_id, self.node_id, interval_ms, int(settle)),
                    QUIET_INTERVALS * interval_ms,
                ]
            )
        )

    async def sampler_lease(self) -> tuple[int, int]:
        """The fencing token while this node holds the sampler lease (taking it when free), else 0; and
        the latest interval a stopping leader closed itself (0: none)."""
        token, handed_over = await self._lease(args=[self.prefix, self.node_id, self.lease_ms])
        return int(token), int(handed_over)

    async def refresh(self, interval_ms: int) -> dict[str, RoomCounts]:
        """The rooms not told their counts within the refresh period, with their counts, locked for a
        publish now."""
        return _room_counts(
            await self._refresh(args=[self.prefix, self.node_id, interval_ms, self.refresh_ms])
        )

    async def fence(self, token: int) -> tuple[bool, float]:
        """Whether ``token`` still holds the sampler lease, and when a node last died (epoch seconds)."""
        ok, last_death_ms = await self._fence(args=[self.prefix, self.node_id, token])
        return bool(ok), int(last_death_ms) / 1000

    async def all_counts(self) -> dict[str, RoomCounts]:
        return _room_counts(await self._all(args=[self.prefix]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _room_counts(reply: list[bytes | str | int]) -> dict[str, RoomCounts]:
    """``{auction: counts}`` from a script's flat ``[auction, conn, uniq, ...]`` reply."""
    return {
        _text(reply[i]): RoomCounts(int(reply[i + 1]), int(reply[i + 2]))  # type: ignore[arg-type]
        for i in range(0, len(reply), 3)
    }


SendCounts = Callable[[str, RoomCounts], Awaitable[None]]


class ClusterNode:
    """This node's part in the cluster: keeps Redis in step with the registry, publishes, leads sampling.

    Socket handlers call ``room_changed`` (synchronous, never waiting for Redis). One task writes the
    changed rooms to Redis in one pipeline and asks the room's publish gate whether to tell the room
    (at most once per interval per room across all nodes, always ending on the latest counts); the
    winner emits through python-socketio's ``AsyncRedisManager``, which reaches the room's sockets on
    every node. A heartbeat task refreshes the node lease, reaps dead nodes' contributions and holds
    (or waits for) the sampler lease; the leader also tells quiet rooms their counts again once per
    lease, so a node whose pub/sub missed updates converges.

    A graceful stop takes the node's contributions back and tells the rooms it was in their new counts
    at once. A stopping leader closes the interval it was sampling itself (``hand_over``) and records it
    in Redis as it gives the lease up; the next leader drops that interval from what it sends.

    When Redis fails the node degrades: it logs at ERROR, ``ready`` turns False and each room is told
    its local counts by ``local`` (this node's sockets only). When Redis answers again the node writes
    its whole state back in one transaction and the rooms converge on the global counts.
    """

    _SYNC_TASK = "cluster-sync"
    _HEARTBEAT_TASK = "cluster-heartbeat"

    def __init__(
        self,
        store: RedisCounts,
        registry: RoomRegistry,
        publish: SendCounts,
        local: CountBroadcaster,
        interval_seconds: float,
        lease_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self._registry = registry
        self._publish = publish
        self._local = local
        self._interval_ms = max(1, int(interval_seconds * 1000))
        self._heartbeat_seconds = lease_seconds / 3
        self._clock = clock
        self.healthy = False
        self.live_nodes = 0
        self.sampler_token = 0
        self.leader_since = 0.0
        # The latest interval a stopping leader closed itself, as last read from Redis.
        self.handed_over = 0
        # The interval this node closed itself on stopping, recorded when it gives the lease up.
        self._closed_interval = 0
        # True from the ERROR log of an outage until Redis answers again (one ERROR per outage).
        self._unreachable = False
        self._dirty: set[str] = set()
        # Held while writing this node's contribution: batches and whole re-syncs land in order.
        self._writing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._synced: dict[str, set[str]] = {}
        self._global: dict[str, tuple[RoomCounts, RoomCounts]] = {}
        self._publish_due: dict[str, asyncio.TimerHandle] = {}
        self._settle_due: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: Supervisor | None = None
        self._resynced = asyncio.Event()
        self._closed = False

    @property
    def ready(self) -> bool:
        return self.healthy

    async def start(self, supervisor: Supervisor) -> None:
        """Starts the sync and heartbeat loops under ``supervisor``; the first heartbeat replaces this
        node's old contributions. A loop that fails on anything but Redis (which it handles itself) is
        restarted, logged and counted there, and keeps /readyz off meanwhile."""
        self._supervisor = supervisor
        supervisor.start(self._SYNC_TASK, self._sync_loop)
        supervisor.start(self._HEARTBEAT_TASK, self._heartbeat_loop)

    async def wait_synced(self) -> None:
        """Returns once this node has written its state to Redis at least once."""
        await self._resynced.wait()

    def room_changed(self, auction_id: str) -> None:
        if self._closed:
            return
        if not self.healthy:
            self._local.room_changed(auction_id)
            return
        self._dirty.add(auction_id)
        self._wake.set()

    def counts(self, auction_id: str) -> RoomCounts:
        """The room's global counts as last read, moved by this node's changes since (for a joiner's ack)."""
        local = self._registry.counts(auction_id)
        known = self._global.get(auction_id)
        if not self.healthy or known is None:
            return local
        global_counts, local_then = known
        return RoomCounts(
            max(
                local.viewer_count, global_counts.viewer_count + local.viewer_count - local_then.viewer_count
            ),
            max(
                local.unique_viewers,
                global_counts.unique_viewers + local.unique_viewers - local_then.unique_viewers,
            ),
        )

    # --- writing this node's state -------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._writing:
                if not self.healthy or not self._dirty:
                    continue
                rooms, self._dirty = self._dirty, set()
                try:
                    await self._sync(rooms)
                except REDIS_FAILURES as error:
                    self._degrade(error)

    async def _sync(self, rooms: set[str]) -> None:
        writes = []
        local_then = {}
        for auction_id in rooms:
            connections, anonymous, viewers = self._registry.contribution(auction_id)
            before = self._synced.get(auction_id, set())
            # The room's gate is asked in the same script, unless a publish is already due for it
            # (a retry or a settle, which publishes this change too).
            ask = auction_id not in self._publish_due
            writes.append(
                RoomWrite(auction_id, connections, anonymous, viewers - before, before - viewers, ask)
            )
            local_then[auction_id] = (viewers, self._registry.counts(auction_id))
        replies = await self.store.sync_rooms(writes, self._interval_ms)
        for write, (global_counts, decision) in zip(writes, replies, strict=True):
            auction_id = write.auction_id
            if decision is not None:
                self._decided(auction_id, decision)
            viewers, local = local_then[auction_id]
            if local.viewer_count:
                self._synced[auction_id] = viewers
            else:
                self._synced.pop(auction_id, None)
            if global_counts.viewer_count:
                self._global[auction_id] = (global_counts, local)
            else:
                self._global.pop(auction_id, None)

    async def _resync(self) -> None:
        """Writes this node's whole state, replacing what Redis held for it (start, return of Redis)."""
        # After any batch in flight: a batch read from the registry before this state and landing in
        # Redis after it would leave its older counts there for good (seen in the cluster benchmark,
        # when an overloaded node's late heartbeat found its lease lapsed mid-batch).
        async with self._writing:
            self._dirty.clear()
            rooms = {a: self._registry.contribution(a) for a in self._registry.active_rooms()}
            await self.store.replace_all(rooms)
            self._synced = {a: viewers for a, (_c, _a, viewers) in rooms.items()}
            self._global.clear()
        for auction_id in rooms:
            self._schedule_publish(auction_id, 0.0)

    # --- publishing ----------------------------------------------------------------------------------

    def _schedule_publish(self, auction_id: str, delay: float, settle: bool = False) -> None:
        # One pending call per room: a pending settle publishes any change too, and a settle asked
        # for while a call is pending makes that call a settling one (a retry that found the counts
        # unchanged would otherwise drop it).
        if self._closed:
            return
        if settle:
            self._settle_due.add(auction_id)
        if auction_id not in self._publish_due:
            loop = asyncio.get_running_loop()
            self._publish_due[auction_id] = loop.call_later(delay, self._start_publish, auction_id)

    def _start_publish(self, auction_id: str) -> None:
        del self._publish_due[auction_id]
        settle = auction_id in self._settle_due
        self._settle_due.discard(auction_id)
        task = asyncio.create_task(self._publish_room(auction_id, settle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_room(self, auction_id: str, settle: bool = False) -> None:
        if not self.healthy:
            return
        try:
            decision = await self.store.publish_gate(auction_id, self._interval_ms, settle)
        except REDIS_FAILURES as error:
            self._degrade(error)
            return
        self._decided(auction_id, decision, settle)

    def _decided(self, auction_id: str, decision: Published, settle: bool = False) -> None:
        if decision.retry_after is not None:
            # Another node told the room within this interval, perhaps before this node's change:
            # asking again when its interval ends makes the room's last update the true one.
            self._schedule_publish(auction_id, decision.retry_after, settle)
        elif decision.counts is not None:
            # From a task: the sync loop must not wait for an emit to every socket in the room.
            task = asyncio.create_task(self._deliver(auction_id, decision.counts, settle))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, auction_id: str, counts: RoomCounts, settle: bool) -> None:
        await self._tell(auction_id, counts)
        if not settle:
            # Two nodes' emits can overtake each other on the way to a room (an emit delayed on a busy
            # node lands after a later one), leaving an old value on show while Redis holds the new
            # one. Two intervals after a publish the counts are published once more (one settling
            # update per burst, through the same gate), so the room ends on the truth.
            self._schedule_publish(auction_id, 2 * self._interval_ms / 1000, settle=True)

    # --- the lease -----------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._beat()
            except REDIS_FAILURES as error:
                self._degrade(error)
            # Nothing signals "time to renew": a lease is renewed on a timer, a third of its length.
            await asyncio.sleep(self._heartbeat_seconds)

    async def _beat(self) -> None:
        valid, self.live_nodes = await self.store.heartbeat()
        if not valid or not self.healthy:
            await self._resync()
            self.healthy = True
            self._resynced.set()
            if self._unreachable:
                self._unreachable = False
                logger.warning(
                    "Redis reachable again; this node's counts re-synced", extra={"node": self.store.node_id}
                )
            elif not valid and self.live_nodes > 1:
                logger.info("Joined the gateway cluster", extra={"node": self.store.node_id})
        changed = await self.store.reap()
        if changed:
            logger.warning(
                "Dead gateway node(s) reaped; their viewers removed",
                extra={"node": self.store.node_id, "rooms": len(changed)},
            )
            for auction_id in changed:
                self._schedule_publish(auction_id, 0.0)
        token, self.handed_over = await self.store.sampler_lease()
        if token and token != self.sampler_token:
            self.leader_since = self._clock()
            logger.info("Sampler lease taken", extra={"node": self.store.node_id, "token": token})
        self.sampler_token = token
        if token:
            stale = await self.store.refresh(self._interval_ms)
            for auction_id, counts in stale.items():
                await self._tell(auction_id, counts)

    async def _tell(self, auction_id: str, counts: RoomCounts) -> None:
        try:
            await self._publish(auction_id, counts)
        except Exception:
            # The next change or refresh publishes the truth again.
            logger.exception("Cluster count update failed", extra={"auction_id": auction_id})

    def _degrade(self, error: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            logger.error(
                "Redis unreachable: serving this node's sockets with local counts, not ready, no snapshots",
                extra={"node": self.store.node_id, "error": repr(error)},
            )
        if self.healthy:
            for auction_id in self._registry.active_rooms():
                self._local.room_changed(auction_id)
        self.healthy = False
        self.sampler_token = 0

    # --- sampling ------------------------------------------------------------------------------------

    async def sample_view(self) -> dict[str, RoomCounts] | None:
        """Every room's global counts while this node leads sampling; None otherwise."""
        if not self.healthy or not self.sampler_token:
            return None
        try:
            return await self.store.all_counts()
        except REDIS_FAILURES as error:
            self._degrade(error)
            return None

    async def fence(self, snapshots: list[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """The snapshots this node may queue: none unless it still holds the lease with its token.

        A snapshot is marked ``partial`` when a node died, or this node took the lease, after its
        interval began (its samples then miss some viewers or part of the interval).
        """
        if not snapshots:
            return snapshots
        token = self.sampler_token
        try:
            ok, last_death = await self.store.fence(token) if token else (False, 0.0)
        except REDIS_FAILURES as error:
            self._degrade(error)
            ok, last_death = False, 0.0
        if not ok:
            logger.error(
                "Snapshots not queued: this node no longer holds the sampler lease",
                extra={"node": self.store.node_id, "snapshots": len(snapshots)},
            )
            return []
        return [
            replace(s, partial=True)
            if s.partial or last_death >= s.minute_start or self.leader_since > s.minute_start
            else s
            for s in snapshots
            # A stopping leader closed this interval itself (hand_over); it reached the outbox there.
            if s.minute_start > self.handed_over
        ]

    def hand_over(self, snapshots: list[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """The partial interval a stopping node may queue, closed from its own samples: only while it
        holds the sampler lease, and not an interval a previous leader already closed on its stop.

        The interval is recorded in Redis as the lease is given up (``close``), atomically, so the next
        leader does not send it again. Synchronous: the app's shutdown must not wait for Redis to
        close the interval (a Redis outage means no lease, and nothing is queued).
        """
        if not self.healthy or not self.sampler_token:
            return []
        kept = [s for s in snapshots if s.minute_start > self.handed_over]
        if kept:
            self._closed_interval = max(s.minute_start for s in kept)
        return kept

    async def close(self) -> int:
        """Stops the tasks, takes this node's contributions back, tells the rooms and gives the sampler lease
        up; the live nodes left (0 if unknown).

        Idempotent: the app's shutdown calls it, and its cleanup context again in case start-up failed.
        """
        if self._closed:
            return 0
        self._closed = True
        for handle in self._publish_due.values():
            handle.cancel()
        self._publish_due.clear()
        if self._supervisor is not None:
            for name in (self._SYNC_TASK, self._HEARTBEAT_TASK):
                await self._supervisor.stop_task(name)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self.healthy:
            return 0
        try:
            changed, live = await self.store.leave_cluster(self.sampler_token, self._closed_interval)
            # The rooms on the other nodes hear their new counts now, not at their next change.
            await asyncio.gather(*(self._tell_on_leaving(auction_id) for auction_id in changed))
        except REDIS_FAILURES as error:
            logger.error(
                "Could not leave the cluster cleanly; the lease will expire", extra={"error": repr(error)}
            )
            return 0
        return live

    async def _tell_on_leaving(self, auction_id: str) -> None:
        # Through the gate, like every publish. Its lock lasts one interval: waiting it out twice at
        # most bounds the shutdown, and the leader's refresh covers a room still locked after that.
        for _attempt in range(3):
            decision = await self.store.publish_gate(auction_id, self._interval_ms)
            if decision.retry_after is None:
                if decision.counts is not None:
                    await self._tell(auction_id, decision.counts)
                return
            # The lock expires on Redis's clock; there is no event to wait for.
            await asyncio.sleep(decision.retry_after)
