"""The Redis adapter: one node's view of the shared state, one round trip (or one pipeline) per call.

Every node keeps its own sockets in its ``RoomRegistry`` (the local truth) and writes its
contribution to each room into Redis; the global counts are the sum over live nodes, read from
Redis, never by asking the other nodes.

Key layout (``p`` is the prefix, ``va:gw:``). Every key of one auction carries the auction's id as
its Redis Cluster hash tag, ``p{a}:...``, and every key of one node the tag ``{n:<node>}``, so one
auction's keys share a slot (``room_key`` / ``node_key`` build the names; a new per-auction key goes
under ``room_key``):

- ``p{a}:c`` / ``p{a}:a`` — hashes node → connections / anonymous connections in room ``a``;
- ``p{a}:u`` — hash viewer id → how many nodes hold that viewer in ``a`` (its length is the
  number of distinct identified viewers);
- ``p{a}:v:<node>`` — the viewer ids a node contributed to ``a``, so they can be taken back;
- ``p{a}:last`` / ``p{a}:lock`` / ``p{a}:settled`` / ``p{a}:fresh`` — the last published counts, the
  per-room publish lock and markers that the room was told its counts (settling, recently);
- ``p{n:<node>}:rooms`` — the rooms a node contributed to;
- ``pnodes`` — sorted set, node id → lease expiry (ms, Redis clock), refreshed by each node's heartbeat;
- ``prooms`` — rooms with any connection; ``psampler`` / ``psampler_token`` — the sampler lease and
  its fencing token; ``plast_death`` — when survivors last reaped a dead node; ``phanded_over`` — the
  latest interval a stopping leader closed itself (the next leader must not send it again).

All updates are Lua scripts (``scripts/``), so each is atomic. Channels follow the same rule: an
auction's count updates travel on ``pu:{a}`` (``relay.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from socket_gateway.cluster.scripts import ClusterScripts
from socket_gateway.live.rooms import RoomCounts

PREFIX = "va:gw:"
# After a publish, once a room has had no publish for this many intervals, the sampler leader tells it
# its counts once more (refresh.lua): the end of every burst is re-told by one node, after every
# node's emits of the burst have had time to land.
QUIET_INTERVALS = 4
# Errors that mean "Redis is unreachable or failing": the node falls back to its local counts.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


def room_key(auction_id: str, prefix: str = PREFIX) -> str:
    """The stem of every key of one auction, ``p{a}`` (its hash tag: the auction's slot)."""
    return f"{prefix}{{{auction_id}}}"


def node_key(node_id: str, prefix: str = PREFIX) -> str:
    """The stem of every key of one node, ``p{n:<node>}``."""
    return f"{prefix}{{n:{node_id}}}"


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
    degrade. The scripts are read from their files here, once per node; redis-py's ``Script`` runs
    each by ``EVALSHA`` and loads it again on ``NOSCRIPT`` (a restarted or flushed Redis).
    """

    def __init__(self, client: aioredis.Redis, node_id: str, lease_seconds: float, prefix: str = PREFIX):
        self.client = client
        self.node_id = node_id
        self.lease_ms = int(lease_seconds * 1000)
        # A quiet room is told its counts again once per lease (refresh.lua).
        self.refresh_ms = self.lease_ms
        self.prefix = prefix
        scripts = ClusterScripts.load()
        self._sync = client.register_script(scripts.sync)
        self._heartbeat = client.register_script(scripts.heartbeat)
        self._reap = client.register_script(scripts.reap)
        self._reset = client.register_script(scripts.reset)
        self._gate = client.register_script(scripts.publish_gate)
        self._lease = client.register_script(scripts.sampler_lease)
        self._fence = client.register_script(scripts.fence)
        self._all = client.register_script(scripts.all_counts)
        self._release = client.register_script(scripts.release)
        self._refresh = client.register_script(scripts.refresh)

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
                await self.client.script_load(self._sync.script)
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
