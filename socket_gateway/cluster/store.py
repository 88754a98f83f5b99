"""The Redis adapter: one node's view of the shared state; every call bounded, whatever the cluster's size.

Every node keeps its own sockets in its ``RoomRegistry`` (the local truth) and writes its
contribution to each room into Redis; the global counts are the sum over live nodes, kept in Redis
as running totals, never asked of the other nodes. No script or command walks every room or every
node: each one touches one room, or one node's sets in chunks of at most ``CHUNK`` rooms.

A node writes as a **member**, ``<node id>@<ms>``: a new one each time it writes its whole state
(start, a lapsed lease, Redis back), so a survivor still reaping the old member can never take back
what the new one wrote.

Key layout (``p`` is the prefix, ``va:gw:``). Every key of one auction carries the auction's id as
its Redis Cluster hash tag, ``p{a}:...``, and every key of one member (or node) the tag
``{n:<member>}``, so one auction's keys share a slot and no script touches two slots (``room_key``
/ ``node_key`` build the stems; a new per-auction key goes under ``room_key``):

- ``p{a}:c`` / ``p{a}:a`` — hashes member → connections / anonymous connections in room ``a``;
  ``p{a}:t`` — their totals (fields ``c`` and ``a``), so reading a room's counts is O(1);
- ``p{a}:u`` — hash viewer id → how many members hold that viewer in ``a`` (its length is the
  number of distinct identified viewers); ``p{a}:v:<member>`` — the viewer ids a member contributed;
- ``p{a}:last`` / ``p{a}:lock`` / ``p{a}:settled`` / ``p{a}:fresh`` — the last published counts, the
  per-room publish lock and markers that the room was told its counts (settling, recently);
- ``p{a}:o`` — the member that owns the room's sampling; ``p{a}:s`` — the samples of the minute being
  sampled (kept where the next owner finds them);
- ``p{n:<member>}:rooms`` / ``:owned`` / ``:inbox`` — the rooms a member contributed to, the rooms
  it owns, the rooms handed to it that it has not picked up yet; ``p{n:<member>}:reaper`` — which
  survivor is reaping it; ``p{n:<node>}:member`` — a node id's latest member (a restart retires it);
- ``p:nodes`` — sorted set, member → lease expiry (ms, Redis clock), renewed by each heartbeat;
- ``p:deaths`` — sorted set, ``<member>|<last renewal>`` → when a survivor last reaped part of it
  (epoch seconds), for every member reaped as dead in the last ``DEATHS_KEPT_SECONDS``: each one's
  death window, during which its viewers may have been counted twice (``death_watch.py``);
- ``p{lease}:holder`` / ``p{lease}:token`` — the coordinator lease (one node evaluates the seller
  alerts) and its fencing token.

All updates are Lua scripts (``scripts/``), so each is atomic. Channels follow the same rule: an
auction's count updates travel on ``pu:{a}`` (``relay.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from socket_gateway.cluster.scripts import ClusterScripts
from socket_gateway.live.rooms import RoomCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot

PREFIX = "va:gw:"
# After a publish, once a room has had no publish for this many intervals, its sampling owner tells
# it its counts once more (sample.lua): the end of every burst is re-told by one node, after every
# node's emits of the burst have had time to land.
QUIET_INTERVALS = 4
# How long a dead member's death window is kept in ``p:deaths``: far longer than a closed minute is
# held back waiting for every member to renew after its end (``death_watch.py``).
DEATHS_KEPT_SECONDS = 600.0
# How long the shares of a minute sampled during a Redis outage wait in Redis to be merged.
OUTAGE_KEPT_MS = 600_000
# Errors that mean "Redis is unreachable or failing": the node falls back to its local counts.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)
# Rooms per call when a member's sets are walked (reaping, leaving, re-writing, sampling): each
# script touches one room, and one pipeline carries at most this many.
CHUNK = 200
# Chunks one heartbeat reaps at most (the rest waits for the next heartbeat, still claimed).
REAP_CHUNKS_PER_BEAT = 50

RedisClient = aioredis.Redis | RedisCluster


def room_key(auction_id: str, prefix: str = PREFIX) -> str:
    """The stem of every key of one auction, ``p{a}`` (its hash tag: the auction's slot)."""
    return f"{prefix}{{{auction_id}}}"


def node_key(member: str, prefix: str = PREFIX) -> str:
    """The stem of every key of one member (or node id), ``p{n:<member>}``."""
    return f"{prefix}{{n:{member}}}"


def successor(auction_id: str, members: Iterable[str]) -> str:
    """The member that takes the room's sampling over (rendezvous hashing: each room's choice moves
    only when its chosen member goes, and rooms spread evenly over the members); '' if none."""
    best, chosen = -1, ""
    for member in members:
        score = int.from_bytes(
            hashlib.blake2b(f"{auction_id}|{member}".encode(), digest_size=8).digest(), "big"
        )
        if score > best:
            best, chosen = score, member
    return chosen


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


class Synced(NamedTuple):
    """A room's global counts after a write, its gate's answer if asked, and whether the write made
    this member the room's sampling owner."""

    counts: RoomCounts
    decision: Published | None
    claimed: bool


class DeathView(NamedTuple):
    """Whether a closed minute can still be touched by a death (epoch seconds, all on Redis's clock)."""

    oldest_renewal: float  # the last renewal of the member that renewed longest ago
    latest_renewal: float  # the last renewal of the member that renewed most recently
    deaths: list[tuple[float, float]]  # (last renewal, last reap) of each member reaped after ``since``


@dataclass(frozen=True, slots=True)
class MinuteSamples:
    """One room's samples over one minute, as Redis holds them."""

    minute_start: int
    samples: int
    total: int
    peak: int
    minimum: int
    last: RoomCounts
    partial: bool
    # Sample i taken on the minute's tick i + 1, oldest first; empty when the samples are not on the
    # ticks (the room was first sampled after the minute's first tick, or a tick was missed).
    values: tuple[int, ...] = ()


class Sampled(NamedTuple):
    """The owner's sample of one room: ``owned`` False if another member owns it now; ``gone`` when the
    room was forgotten (empty for a whole minute); ``publish`` when the room is due a refresh with
    ``counts``; the minutes the sample closed; the minute still open (None when closed)."""

    owned: bool
    gone: bool
    counts: RoomCounts
    publish: bool
    closed: list[MinuteSamples]
    current: MinuteSamples | None


class Reaped(NamedTuple):
    """What taking a member's rooms back did: the rooms whose counts changed, the rooms whose sampling
    passed to this member, and whether the member is gone for good."""

    changed: list[str]
    mine: set[str]
    done: bool


def _published(reply: Sequence[int]) -> Published:
    """A publish gate's answer, from ``{1, conn, uniq}``, ``{0}`` or ``{-1, wait ms}``."""
    if reply[0] == 1:
        return Published(RoomCounts(int(reply[1]), int(reply[2])), None)
    if reply[0] == -1:
        return Published(None, int(reply[1]) / 1000)
    return Published(None, None)


def _minute(reply: Sequence[Any]) -> MinuteSamples:
    minute, samples, total, peak, minimum, conn, uniq, partial, on_slots = (int(v) for v in reply[:9])
    text = _text(reply[9])
    values = tuple(int(v) for v in text.split(",")) if on_slots and text else ()
    return MinuteSamples(minute, samples, total, peak, minimum, RoomCounts(conn, uniq), bool(partial), values)


def _sampled(reply: list[Any]) -> Sampled:
    if reply[0] == -1:
        # Another member owns the room.
        return Sampled(False, False, RoomCounts(0, 0), False, [], None)
    if reply[0] == 0:
        # This tick (or minute) was already taken: the sampling just changed hands.
        return Sampled(True, False, RoomCounts(int(reply[1]), int(reply[2])), False, [], None)
    gone, conn, uniq, publish, closed = (int(v) for v in reply[1:6])
    minutes = [_minute(reply[6 + 10 * i : 16 + 10 * i]) for i in range(closed)]
    rest = reply[6 + 10 * closed :]
    return Sampled(
        True, bool(gone), RoomCounts(conn, uniq), bool(publish), minutes, _minute(rest) if rest else None
    )


def _chunks(items: Iterable[str], size: int = CHUNK) -> Iterable[list[str]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class RedisCounts:
    """One node's view of the shared Redis state; every call is a bounded round trip (or pipeline).

    Methods raise one of ``REDIS_FAILURES`` when Redis is unreachable; the caller decides how to
    degrade. The scripts are read from their files here, once per node, and run by ``EVALSHA`` with
    their slot's stem as their one key (Redis Cluster routes them by it); a ``NOSCRIPT`` (a restarted
    or flushed Redis, a new shard) loads them again.
    """

    def __init__(self, client: RedisClient, node_id: str, lease_seconds: float, prefix: str = PREFIX):
        self.client = client
        self.node_id = node_id
        self.lease_ms = int(lease_seconds * 1000)
        # A quiet room is told its counts again once per lease (sample.lua).
        self.refresh_ms = self.lease_ms
        self.prefix = prefix
        self._incarnations = itertools.count()
        self.member = self._new_member()
        self._nodes = f"{prefix}nodes"
        self._deaths = f"{prefix}deaths"
        self._lease_key = f"{prefix}{{lease}}"
        self._scripts = ClusterScripts.load()
        self._sha = {
            name: hashlib.sha1(getattr(self._scripts, name).encode()).hexdigest()
            for name in ("sync", "drop", "sample", "heartbeat", "members", "publish_gate", "sampler_lease")
        }

    def _new_member(self) -> str:
        return f"{self.node_id}@{time.time_ns() // 1_000_000}.{next(self._incarnations)}"

    def _room(self, auction_id: str) -> str:
        return room_key(auction_id, self.prefix)

    def _node(self, member: str) -> str:
        return node_key(member, self.prefix)

    async def _load_scripts(self) -> None:
        # On Redis Cluster, SCRIPT LOAD goes to every primary.
        for name in self._sha:
            await self.client.script_load(getattr(self._scripts, name))

    async def _run(self, name: str, key: str, *args: Any) -> Any:
        try:
            return await self.client.evalsha(self._sha[name], 1, key, *args)
        except NoScriptError:
            await self._load_scripts()
            return await self.client.evalsha(self._sha[name], 1, key, *args)

    async def _pipeline(
        self, calls: list[tuple[str, str, tuple[Any, ...]]], before: tuple[Any, ...] | None = None
    ) -> list[Any]:
        """Runs the scripts ``(name, key, args)`` in one non-transactional pipeline; their replies.

        ``before``: a plain command ``(name, *args)`` that must land before the scripts: on one Redis
        it leads the same pipeline (one connection keeps the order); on Redis Cluster it is a round
        trip of its own (a pipeline there runs each shard's part apart). Nothing in a batch runs when
        a script is missing, so loading them and sending again is safe: every write is absolute or
        set-guarded.
        """
        if not calls:
            return []
        if before is not None and isinstance(self.client, RedisCluster):
            await self._commands([before])
            before = None
        for attempt in range(2):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    if before is not None:
                        getattr(pipe, before[0])(*before[1:])
                    for name, key, args in calls:
                        # Not pipe.evalsha: redis-py's cluster pipeline blocks that method, while the
                        # command itself is routed by its one key like any other.
                        pipe.execute_command("EVALSHA", self._sha[name], 1, key, *args)
                    replies = list(await pipe.execute())
                    return replies[1:] if before is not None else replies
            except NoScriptError:
                if attempt:
                    raise
                await self._load_scripts()
        raise AssertionError("unreachable")

    async def _commands(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Plain commands ``(name, *args)`` in one non-transactional pipeline; their replies."""
        if not calls:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for name, *args in calls:
                getattr(pipe, name)(*args)
            return list(await pipe.execute())

    # --- a member's contribution -------------------------------------------------------------------

    async def sync_rooms(self, rooms: list[RoomWrite], interval_ms: int = 0) -> list[Synced]:
        """Writes this member's contribution to each room (one script per room, in one pipeline); each
        room's global counts, its publish gate's answer for the rooms that asked (``interval_ms``: the
        publish interval), and whether the write made this member the room's sampling owner.

        Every room this member is in goes into its room set first, so a survivor reaping this
        member always finds every room it wrote, even in a Redis that restarted empty since the
        room's first write.
        """
        node = self._node(self.member)
        joined = [room.auction_id for room in rooms if room.connections > 0]
        replies = await self._pipeline(
            [
                (
                    "sync",
                    self._room(room.auction_id),
                    (
                        *(self.member, room.connections, room.anonymous, int(room.ask_gate), interval_ms),
                        *(QUIET_INTERVALS * interval_ms, len(room.added)),
                        *room.added,
                        *room.removed,
                    ),
                )
                for room in rooms
            ],
            before=("sadd", f"{node}:rooms", *joined) if joined else None,
        )
        out: list[Synced] = []
        claimed: list[str] = []
        for room, reply in zip(rooms, replies, strict=True):
            counts = RoomCounts(int(reply[0]), int(reply[1]))
            decision = None
            if room.ask_gate:
                decision = Published(counts, None) if reply[2] == 1 else _published(reply[2:4])
            if reply[4]:
                claimed.append(room.auction_id)
            out.append(Synced(counts, decision, bool(reply[4])))
        left = [room.auction_id for room in rooms if room.connections == 0]
        # After the room's own write: the room set keeps a room until its contribution is gone.
        await self._commands(
            ([("sadd", f"{node}:owned", *claimed)] if claimed else [])
            + ([("srem", f"{node}:rooms", *left)] if left else [])
        )
        return out

    async def replace_all(self, rooms: dict[str, tuple[int, int, set[str]]]) -> tuple[list[str], set[str]]:
        """Writes this node's whole state as a new member (start, a lapsed lease, Redis back): the old
        member (this process's, and the last one recorded under this node id: a restart) is retired
        and taken back first, in chunks, so a restart never double-counts. The rooms whose counts the
        retirement changed, and the rooms this member owns now."""
        previous = self.member
        self.member = self._new_member()
        recorded = await self.client.getset(f"{self._node(self.node_id)}:member", self.member)
        await self._run("heartbeat", self._nodes, self.member, self.lease_ms)
        changed: list[str] = []
        owned: set[str] = set()
        for stale in {previous, _text(recorded) if recorded else previous} - {self.member}:
            await self._run("members", self._nodes, "retire", stale)
            while True:
                reaped = await self.reap_member(stale, died=False)
                changed += reaped.changed
                owned |= reaped.mine
                if reaped.done:
                    break
        for chunk in _chunks(rooms):
            for synced, auction_id in zip(
                await self.sync_rooms(
                    [RoomWrite(a, rooms[a][0], rooms[a][1], rooms[a][2], set()) for a in chunk]
                ),
                chunk,
                strict=True,
            ):
                if synced.claimed:
                    owned.add(auction_id)
        return changed, owned

    async def heartbeat(self) -> tuple[bool, int]:
        """Renews this member's lease: whether it was still valid (if not, the node must write its state
        again as a new member), and how many members are live."""
        valid, live = await self._run("heartbeat", self._nodes, self.member, self.lease_ms)
        return bool(valid), int(live)

    async def live_members(self) -> list[str]:
        return [_text(m) for m in await self._run("members", self._nodes, "live")]

    # --- taking a member's rooms back -------------------------------------------------------------

    async def reap(self) -> Reaped:
        """Takes back the contributions of members whose lease ran out, a chunk at a time, at most
        ``REAP_CHUNKS_PER_BEAT`` chunks; one survivor reaps each (a claim in its slot, ``:reaper``)."""
        changed: list[str] = []
        mine: set[str] = set()
        chunks = 0
        reply = await self._run("members", self._nodes, "dead", 8)
        for dead, expiry in zip(map(_text, reply[::2]), reply[1::2], strict=True):
            claimed = await self.client.set(
                f"{self._node(dead)}:reaper", self.member, nx=True, px=max(self.lease_ms, 1000)
            )
            if (
                not claimed
                and _text(await self.client.get(f"{self._node(dead)}:reaper") or b"") != self.member
            ):
                continue
            await self._record_death(dead, float(expiry))
            while chunks < REAP_CHUNKS_PER_BEAT:
                chunks += 1
                reaped = await self.reap_member(dead, died=True)
                changed += reaped.changed
                mine |= reaped.mine
                if reaped.done:
                    break
            if chunks >= REAP_CHUNKS_PER_BEAT:
                break
        return Reaped(changed, mine, True)

    async def _record_death(self, member: str, expiry_ms: float) -> None:
        """Records (or extends to now) ``member``'s death window, on Redis's clock: from its last
        renewal, its lease's expiry less the lease (every node's lease is the same:
        ``GATEWAY_NODE_LEASE_SECONDS``), to this reap."""
        seconds, micros = await self.client.time()
        now = seconds + micros / 1e6
        renewal = (expiry_ms - self.lease_ms) / 1000
        await self._commands(
            [
                ("zadd", self._deaths, {f"{member}|{renewal:.3f}": now}),
                ("zremrangebyscore", self._deaths, "-inf", now - DEATHS_KEPT_SECONDS),
            ]
        )

    async def death_view(self, since: float | None) -> DeathView:
        """The oldest and latest lease renewals of the members listed, and the death windows of the
        members reaped after ``since`` (none asked when None): bounded reads (two members of the set,
        the deaths of the last minutes)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(self._nodes, 0, 0, withscores=True)
            pipe.zrange(self._nodes, -1, -1, withscores=True)
            if since is not None:
                pipe.zrangebyscore(self._deaths, f"({since}", "+inf", withscores=True)
            oldest, latest, *found = await pipe.execute()
        if not oldest:
            # Nobody listed (this node's own lease lapsed and was reaped meanwhile): nothing is proved.
            return DeathView(float("-inf"), float("-inf"), [])
        deaths = found[0] if found else []
        return DeathView(
            (float(oldest[0][1]) - self.lease_ms) / 1000,
            (float(latest[0][1]) - self.lease_ms) / 1000,
            [(float(_text(m).rpartition("|")[2]), float(reaped)) for m, reaped in deaths],
        )

    # --- minutes sampled locally during a Redis outage (outage.py) --------------------------------

    async def hand_over_outage(self, snapshots: Sequence[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """Writes this member's share of each minute it closed from its own sockets while Redis failed,
        ``p{a}:out:<minute>``, member → ``samples,total,peak,minimum,connections,unique``; the shares
        written. A minute the room closed in Redis (up to ``p{a}:k``'s ``cl``) or still holds open
        there (``p{a}:s``'s ``m``: its samples survived, its owner's next sample closes it) is not
        handed: the cluster has it already."""
        rooms = sorted({s.auction_id for s in snapshots})
        known: dict[str, tuple[int, int]] = {}
        for start in range(0, len(rooms), CHUNK):
            chunk = rooms[start : start + CHUNK]
            calls: list[tuple[Any, ...]] = []
            for a in chunk:
                calls += [("hget", f"{self._room(a)}:k", "cl"), ("hget", f"{self._room(a)}:s", "m")]
            replies = await self._commands(calls)
            for index, a in enumerate(chunk):
                closed, still_open = replies[2 * index], replies[2 * index + 1]
                known[a] = (int(closed) if closed else -1, int(still_open) if still_open else -1)
        handed = [
            s
            for s in snapshots
            if s.minute_start > known[s.auction_id][0] and s.minute_start != known[s.auction_id][1]
        ]
        writes: list[tuple[Any, ...]] = []
        for s in handed:
            key = f"{self._room(s.auction_id)}:out:{s.minute_start}"
            share = f"{s.sample_count},{round(s.avg_viewers * s.sample_count)},{s.peak_viewers},"
            share += f"{s.min_viewers},{s.viewer_count},{s.unique_viewers}"
            writes += [("hset", key, self.member, share), ("pexpire", key, OUTAGE_KEPT_MS)]
        for start in range(0, len(writes), 2 * CHUNK):
            await self._commands(writes[start : start + 2 * CHUNK])
        return handed

    async def merge_outage(self, minutes: Sequence[tuple[str, int]], gateway_id: str) -> list[MinuteSnapshot]:
        """The outage minutes this member is first to claim (``p{a}:out:<minute>:done``), each merged
        from every member's share, ``partial``."""
        merged: list[MinuteSnapshot] = []
        for start in range(0, len(minutes), CHUNK):
            chunk = minutes[start : start + CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for a, m in chunk:
                    pipe.set(f"{self._room(a)}:out:{m}:done", self.member, nx=True, px=OUTAGE_KEPT_MS)
                claims = await pipe.execute()
            won = [(a, m) for (a, m), claimed in zip(chunk, claims, strict=True) if claimed]
            calls: list[tuple[Any, ...]] = []
            for a, m in won:
                calls += [("hgetall", f"{self._room(a)}:out:{m}"), ("delete", f"{self._room(a)}:out:{m}")]
            replies = await self._commands(calls)
            for index, (a, m) in enumerate(won):
                shares = replies[2 * index]
                if shares:
                    merged.append(_merged_outage_minute(a, m, shares.values(), gateway_id))
        return merged

    async def reap_member(self, member: str, died: bool, closed: dict[str, int] | None = None) -> Reaped:
        """Takes one chunk of ``member``'s rooms back, handing the sampling of the rooms it owned to
        their successors among the live members (their inboxes hear of it first); ``done`` once
        nothing of it is left. ``died``: the minutes being sampled are flagged partial; ``closed``: the
        minute a leaving member closed itself, per room (its successor skips the rest of it)."""
        node = self._node(member)
        rooms, owned = await self._commands(
            [("srandmember", f"{node}:rooms", CHUNK), ("srandmember", f"{node}:owned", CHUNK)]
        )
        owned = [_text(a) for a in owned]
        rooms = [a for a in map(_text, rooms) if a not in owned][: CHUNK - len(owned)]
        if not rooms and not owned:
            await self.client.delete(f"{node}:rooms", f"{node}:owned", f"{node}:inbox", f"{node}:reaper")
            await self._run("members", self._nodes, "forget", member)
            return Reaped([], set(), True)
        live = [m for m in await self.live_members() if m != member]
        heirs = {a: successor(a, live) for a in {*rooms, *owned}}
        mine = {a for a, heir in heirs.items() if heir == self.member}
        await self._announce({a: heirs[a] for a in owned})
        targets = list(heirs)
        replies = await self._pipeline(
            [
                ("drop", self._room(a), (member, heirs[a], int(died), (closed or {}).get(a, 0)))
                for a in targets
            ]
        )
        late = {a: heirs[a] for a, reply in zip(targets, replies, strict=True) if reply[2] and a not in owned}
        await self._announce(late)
        mine |= {a for a, heir in late.items() if heir == self.member}
        await self._commands([("srem", f"{node}:rooms", *targets), ("srem", f"{node}:owned", *targets)])
        changed = [a for a, reply in zip(targets, replies, strict=True) if reply[3]]
        return Reaped(changed, mine, False)

    async def _announce(self, heirs: dict[str, str]) -> None:
        """Tells each heir the rooms whose sampling passes to it (its owned set and its inbox)."""
        calls: list[tuple[Any, ...]] = []
        by_heir: dict[str, list[str]] = {}
        for auction_id, heir in heirs.items():
            if heir:
                by_heir.setdefault(heir, []).append(auction_id)
        for heir, rooms in by_heir.items():
            calls.append(("sadd", f"{self._node(heir)}:owned", *rooms))
            if heir != self.member:
                calls.append(("sadd", f"{self._node(heir)}:inbox", *rooms))
        await self._commands(calls)

    async def take_inbox(self) -> set[str]:
        """The rooms handed to this member since the last call (their sampling is its now)."""
        taken: list[bytes] = await self.client.spop(f"{self._node(self.member)}:inbox", CHUNK * 5)  # type: ignore[assignment]
        return {_text(a) for a in taken or ()}

    async def leave_cluster(
        self, sampler_token: int, closed: dict[str, int] | None = None
    ) -> tuple[list[str], int]:
        """Takes this member's contributions back, chunk by chunk, handing its rooms' sampling to the
        other live members, and gives up the coordinator lease; the rooms that changed and the live
        members left. ``closed``: the minute this node closed itself as it stopped, per room: the next
        owner goes on from the next minute (without it, from where the samples are)."""
        if sampler_token:
            await self._run("sampler_lease", self._lease_key, self.member, 0)
        changed: list[str] = []
        await self._run("members", self._nodes, "retire", self.member)
        while True:
            reaped = await self.reap_member(self.member, died=False, closed=closed)
            changed += reaped.changed
            if reaped.done:
                break
        live = await self._run("members", self._nodes, "count")
        return changed, int(live)

    # --- reading and publishing ------------------------------------------------------------------

    async def counts_of(self, auction_ids: Iterable[str]) -> dict[str, RoomCounts]:
        """The global counts of these rooms (those with a viewer), O(1) each, pipelined in chunks."""
        out: dict[str, RoomCounts] = {}
        for chunk in _chunks(auction_ids, CHUNK * 5):
            calls: list[tuple[Any, ...]] = []
            for auction_id in chunk:
                stem = self._room(auction_id)
                calls += [("hmget", f"{stem}:t", ["c", "a"]), ("hlen", f"{stem}:u")]
            replies = await self._commands(calls)
            for index, auction_id in enumerate(chunk):
                (conn, anon), uniq = replies[2 * index], replies[2 * index + 1]
                if conn is not None and int(conn) > 0:
                    out[auction_id] = RoomCounts(int(conn), int(uniq) + int(anon or 0))
        return out

    async def publish_gate(self, auction_id: str, interval_ms: int, settle: bool = False) -> Published:
        return _published(
            await self._run(
                "publish_gate",
                self._room(auction_id),
                *(self.member, interval_ms, int(settle), QUIET_INTERVALS * interval_ms),
            )
        )

    # --- sampling ---------------------------------------------------------------------------------

    async def sample(
        self,
        auction_ids: Sequence[str],
        tick: int,
        minute_start: int,
        closes: bool,
        interval_ms: int,
        tick_number: int = 1,
    ) -> list[Sampled]:
        """This member's sample of each room it owns at ``tick`` (the minute's ``tick_number``-th tick),
        added to the minute's samples in the room's slot; the minutes closed (each exactly once,
        fenced by the room's owner)."""
        out: list[Sampled] = []
        for chunk in _chunks(auction_ids, CHUNK * 5):
            replies = await self._pipeline(
                [
                    (
                        "sample",
                        self._room(a),
                        (
                            self.member,
                            minute_start,
                            int(closes),
                            interval_ms,
                            self.refresh_ms,
                            tick,
                            tick_number,
                        ),
                    )
                    for a in chunk
                ]
            )
            out += [_sampled(reply) for reply in replies]
        return out

    async def disown(self, auction_ids: Iterable[str]) -> None:
        """Drops rooms from this member's owned set (another owns them now, or they are gone)."""
        rooms = list(auction_ids)
        if rooms:
            await self.client.srem(f"{self._node(self.member)}:owned", *rooms)

    async def sampler_lease(self) -> int:
        """The coordinator lease's fencing token while this node holds it (taking it when free), else 0."""
        return int(await self._run("sampler_lease", self._lease_key, self.member, self.lease_ms))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _merged_outage_minute(
    auction_id: str, minute_start: int, shares: Iterable[bytes | str], gateway_id: str
) -> MinuteSnapshot:
    """One minute from every member's share of it (``samples,total,peak,minimum,conn,uniq``)."""
    rows = [[int(v) for v in _text(share).split(",")] for share in shares]
    samples = max(row[0] for row in rows)
    return MinuteSnapshot(
        auction_id=auction_id,
        minute_start=minute_start,
        viewer_count=sum(row[4] for row in rows),
        # The sum of the members' averages is the average of the sums when they sampled the same ticks.
        avg_viewers=sum(row[1] / row[0] for row in rows),
        peak_viewers=sum(row[2] for row in rows),
        min_viewers=sum(row[3] for row in rows),
        sample_count=samples,
        unique_viewers=sum(row[5] for row in rows),
        partial=True,
        gateway_id=gateway_id,
    )
