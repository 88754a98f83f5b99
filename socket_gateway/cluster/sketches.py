"""Unique-viewer sketches across the nodes: each node's share of a room's interval, merged by its sampler.

Every node sketches the viewers it sees (``snapshots.seen_viewers.SeenViewers``) and, on each sampler
tick, writes the sketches of the rooms someone joined since its last write, for the interval in
progress, to ``va:gw:{<auction>}:sk:<interval start>`` (a hash: ``i:<node>`` / ``a:<node>`` → the
node's identified / anonymous sketch; under the auction's hash tag, so one slot; expiring after
three intervals). The node whose sampler closes a room's interval reads that hash and merges every
node's share into the snapshot, so a viewer on two nodes is one viewer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from service_common.log_limits import RateLimitedLog
from service_common.viewer_sketches import merge_serialized
from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.store import PREFIX, REDIS_FAILURES, RedisClient, room_key
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator
from socket_gateway.snapshots.sampler import SamplingStrategy
from socket_gateway.snapshots.seen_viewers import SeenViewers, SketchPair

logger = logging.getLogger(__name__)

# A node's share outlives its interval long enough for a sampler that closes it late (missed ticks).
KEEP_INTERVALS = 3
_IDENTIFIED = b"i:"
_ANONYMOUS = b"a:"


def sketch_key(auction_id: str, interval_start: int, prefix: str = PREFIX) -> str:
    """The hash of every node's share of one room's interval, ``p{a}:sk:<interval start>``."""
    return f"{room_key(auction_id, prefix)}:sk:{interval_start}"


class ClusterSketches:
    """This node's share of each room's sketches, written to Redis, and every node's, merged at a close.

    Args:
        client: the node's Redis client.
        node_id: this node's ``GATEWAY_ID``.
        seen: who this node saw in each room.
        schedule: when intervals open and close (the sampler's).
        health: writes wait while Redis does not hold this node's counts.
        prefix: the key prefix.
    """

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        seen: SeenViewers,
        schedule: SampleSchedule,
        health: NodeHealth,
        prefix: str = PREFIX,
    ) -> None:
        self._client = client
        self._node = node_id.encode()
        self._seen = seen
        self._schedule = schedule
        self._health = health
        self._prefix = prefix
        self._keep_ms = KEEP_INTERVALS * schedule.interval * 1000
        self._open: int | None = None
        self._log = RateLimitedLog(logger, interval_seconds=60.0)

    async def contribute(self, tick: float) -> None:
        """Writes this node's share of the interval ``tick`` falls in, closing it on its last tick.

        A share written after the interval's sampler closed it (this node's tick ran later than that
        node's) is not in that snapshot: a viewer who came and went within the interval's last tick,
        on a node other than the closing one, can be missed. Everyone still there is in the next one.
        """
        interval = self._schedule.interval_of(tick)
        if self._open is not None and self._open != interval:
            # The tick that closed the open interval was missed: it ends with what was seen until now.
            await self._write(self._open, self._seen.changed())
            self._seen.close_interval()
        self._open = interval
        await self._write(interval, self._seen.changed())
        if self._schedule.closes_interval(tick):
            self._seen.close_interval()
            self._open = None

    async def _write(self, interval_start: int, shares: Mapping[str, SketchPair]) -> None:
        if not shares:
            return
        if not self._health.healthy:
            # Redis does not hold this node's counts now: the share waits for the next tick.
            self._seen.mark_changed(shares)
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for auction_id, (identified, anonymous) in shares.items():
                    key = sketch_key(auction_id, interval_start, self._prefix)
                    fields = {_IDENTIFIED + self._node: identified, _ANONYMOUS + self._node: anonymous}
                    pipe.hset(key, mapping={name: value for name, value in fields.items() if value})
                    pipe.pexpire(key, self._keep_ms)
                await pipe.execute()
        except REDIS_FAILURES as error:
            self._seen.mark_changed(shares)
            self._log.warning(
                "sketch_write_failed",
                "Unique-viewer sketches not written to Redis; tried again next tick",
                extra={"rooms": len(shares), "error": repr(error)},
            )

    async def merged_into(self, snapshots: list[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """``snapshots`` with every node's share of their interval merged into their sketches.

        Redis failing loses no snapshot: those then carry no sketches (counted as unsketched).
        """
        if not snapshots:
            return snapshots
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for snapshot in snapshots:
                    pipe.hgetall(sketch_key(snapshot.auction_id, snapshot.minute_start, self._prefix))
                shares: list[dict[bytes, bytes]] = await pipe.execute()
        except REDIS_FAILURES as error:
            self._log.warning(
                "sketch_read_failed",
                "Unique-viewer sketches not read from Redis; snapshots sent without them",
                extra={"snapshots": len(snapshots), "error": repr(error)},
            )
            return snapshots
        return [self._merge(snapshot, fields) for snapshot, fields in zip(snapshots, shares, strict=True)]

    def _merge(self, snapshot: MinuteSnapshot, fields: dict[bytes, bytes]) -> MinuteSnapshot:
        try:
            identified = merge_serialized(v for k, v in fields.items() if k.startswith(_IDENTIFIED))
            anonymous = merge_serialized(v for k, v in fields.items() if k.startswith(_ANONYMOUS))
        except ValueError as error:
            self._log.error(
                "sketch_unreadable",
                "A node's unique-viewer sketch in Redis is not a CPC sketch; snapshot sent without",
                extra={"auction_id": snapshot.auction_id, "error": str(error)},
            )
            return snapshot
        return replace(snapshot, identified_sketch=identified, anonymous_sketch=anonymous)


class SketchedSampling:
    """A cluster sampling strategy whose snapshots carry every node's sketches of their interval.

    Wraps the strategy that decides which node closes which room's interval: on every tick this node
    first writes its own share (so a closing node finds its own beside the others'), then samples
    through ``inner``, then merges the shares into what ``inner`` closed.
    """

    def __init__(self, inner: SamplingStrategy, sketches: ClusterSketches) -> None:
        self._inner = inner
        self._sketches = sketches

    async def sample(self, tick: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        await self._sketches.contribute(tick)
        return await self._sketches.merged_into(await self._inner.sample(tick, aggregator))

    def finish(self, now: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        # Finishing never waits for Redis: a minute closed by a stop carries no sketches.
        return self._inner.finish(now, aggregator)
