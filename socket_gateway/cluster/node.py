"""One gateway node's part in the cluster: its parts built and started together, and the clean stop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, overload

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from service_common.supervision import Supervisor
from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.node_lease import NodeLease
from socket_gateway.cluster.publish import RoomPublisher
from socket_gateway.cluster.relay import CountRelay
from socket_gateway.cluster.sampler_lease import SamplerLease
from socket_gateway.cluster.store import REDIS_FAILURES, RedisClient, RedisCounts
from socket_gateway.cluster.sync import RoomSync
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.rooms import RoomCounts, RoomRegistry

logger = logging.getLogger(__name__)

# A pooled connection idle for longer than this is PINGed before it is used again: one that Redis
# (or a proxy, or a NAT) has dropped meanwhile is found there and replaced, not on the node's call.
HEALTH_CHECK_SECONDS = 10
# Between retries of a call whose connection dropped: 0.1 s, doubling, at most 0.5 s.
RETRY_BACKOFF = (0.05, 0.5)


@overload
def redis_client(url: str, timeout_seconds: float, retries: int) -> aioredis.Redis: ...


@overload
def redis_client(url: str, timeout_seconds: float, retries: int, cluster: bool) -> RedisClient: ...


def redis_client(url: str, timeout_seconds: float, retries: int, cluster: bool = False) -> RedisClient:
    """The node's Redis client: each call (and each connect) bounded by ``timeout_seconds``, and a
    call whose connection dropped or was refused tried again ``retries`` times on a new connection.

    redis-py retries nothing by default through ``from_url`` (its pooled connections get no ``Retry``):
    a connection Redis had closed (a restart, ``CLIENT KILL``, its idle ``timeout``) failed the first
    call made on it and took the whole node out of the cluster until its next heartbeat. A timeout
    is not retried: Redis answering slowly is Redis down for this node, and retrying would hold its
    heartbeat for several timeouts. No I/O here: the client connects on first use. ``cluster``:
    ``url`` is one node of a Redis Cluster (``GATEWAY_REDIS_CLUSTER``), and the client redis-py's
    ``RedisCluster``, which finds the other nodes and routes each command by its key's slot.
    """
    base, cap = RETRY_BACKOFF
    retry = Retry(ExponentialBackoff(cap=cap, base=base), retries, supported_errors=(RedisConnectionError,))
    options: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": retry,
        "retry_on_error": [RedisConnectionError],
        "health_check_interval": HEALTH_CHECK_SECONDS,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, **options)


class ClusterNode:
    """This node's part in the cluster: keeps Redis in step with the registry, publishes, leads sampling.

    Socket handlers call ``room_changed`` (synchronous, never waiting for Redis): ``rooms``
    (``RoomSync``) writes the changed rooms to Redis in one pipeline and asks each room's publish gate
    whether to tell the room; ``publisher`` (``RoomPublisher``) sends the winner's counts through
    ``relay`` (``CountRelay``), which reaches the room's sockets on every node that has some. The
    heartbeat (``lease``: ``NodeLease``) refreshes the node lease, reaps dead nodes' contributions and
    picks up the rooms whose sampling passed to this node (``sampler``: ``SamplerLease``).

    A graceful stop (``close``) takes the node's contributions back, hands the sampling of its rooms
    to the other nodes (their minutes go on in Redis), tells the rooms it was in their new counts at
    once and gives the coordinator lease up. When Redis fails the node degrades (``health``:
    ``NodeHealth``) to local counts; when Redis answers again the node writes its whole state back as
    a new member (in chunks) and the rooms converge.
    """

    _SYNC_TASK = "cluster-sync"
    _HEARTBEAT_TASK = "cluster-heartbeat"
    _RELAY_TASK = "cluster-relay"

    def __init__(
        self,
        store: RedisCounts,
        registry: RoomRegistry,
        relay: CountRelay,
        local: CountBroadcaster,
        interval_seconds: float,
        lease_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.relay = relay
        self.health = NodeHealth(store.node_id, registry, local)
        self.publisher = RoomPublisher(store, self.health, relay.publish, interval_seconds)
        self.sampler = SamplerLease(store, self.health, clock)
        self.rooms = RoomSync(store, registry, self.health, self.publisher, relay, local, self.sampler)
        self.lease = NodeLease(store, self.health, self.rooms, self.publisher, self.sampler, lease_seconds)
        self._supervisor: Supervisor | None = None
        self._closed = False

    @property
    def ready(self) -> bool:
        return self.health.healthy

    @property
    def live_nodes(self) -> int:
        return self.lease.live_nodes

    async def start(self, supervisor: Supervisor) -> None:
        """Starts the sync and heartbeat loops under ``supervisor``; the first heartbeat replaces this
        node's old contributions. A loop that fails on anything but Redis (which it handles itself) is
        restarted, logged and counted there, and keeps /readyz off meanwhile."""
        self._supervisor = supervisor
        supervisor.start(self._RELAY_TASK, self.relay.run)
        supervisor.start(self._SYNC_TASK, self.rooms.run)
        supervisor.start(self._HEARTBEAT_TASK, self.lease.run)

    async def wait_synced(self) -> None:
        """Returns once this node has written its state to Redis at least once."""
        await self.health.resynced.wait()

    def room_changed(self, auction_id: str) -> None:
        if not self._closed:
            self.rooms.room_changed(auction_id)

    def counts(self, auction_id: str) -> RoomCounts:
        """The room's global counts as last read, moved by this node's changes since (for a joiner's ack)."""
        return self.rooms.counts(auction_id)

    async def close(self) -> int:
        """Stops the tasks, takes this node's contributions back, hands its rooms' sampling on, tells the
        rooms and gives the coordinator lease up; the live nodes left (0 if unknown).

        Idempotent: the app's shutdown calls it, and its cleanup context again in case start-up failed.
        """
        if self._closed:
            return 0
        self._closed = True
        self.publisher.stop()
        if self._supervisor is not None:
            for name in (self._SYNC_TASK, self._HEARTBEAT_TASK, self._RELAY_TASK):
                await self._supervisor.stop_task(name)
        await self.publisher.cancel_tasks()
        try:
            return await self._leave()
        finally:
            await self.relay.close()

    async def _leave(self) -> int:
        if not self.health.healthy:
            return 0
        try:
            changed, live = await self.store.leave_cluster(self.sampler.token, self.sampler.closed_on_stop)
            # The rooms on the other nodes hear their new counts now, not at their next change.
            await self.publisher.tell_on_leaving(changed)
        except REDIS_FAILURES as error:
            logger.error(
                "Could not leave the cluster cleanly; the lease will expire", extra={"error": repr(error)}
            )
            return 0
        return live
