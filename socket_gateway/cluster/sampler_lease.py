"""This node's share of the cluster's sampling (the rooms it owns) and the coordinator lease."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from socket_gateway.cluster.health import NodeHealth
from socket_gateway.cluster.store import RedisCounts

logger = logging.getLogger(__name__)


class SamplerLease:
    """The rooms whose sampling this node owns (``owned``), and its hold on the coordinator lease.

    Sampling is spread over the nodes by auction: a room's first writer owns it (``sync.lua``), and
    when its owner dies or leaves, the room passes to its successor among the live nodes by
    rendezvous hashing (``store.successor``), told through the successor's inbox in Redis and picked
    up on its next heartbeat (``renew``). The minute's samples live in the room's slot in Redis, so
    the next owner closes the minute with every sample taken. A stopping node closes its rooms' open
    minutes itself (``partial``, from its samples so far: the stop must not wait for Redis) and
    records them as it leaves (``closed_on_stop``); the next owner goes on from the next minute.

    The coordinator lease (``token``: one node, with an ``INCR`` fencing token) is no longer about
    sampling: the node holding it evaluates the seller alerts. Both are lost on any Redis failure
    (the node's ``degrade``): the node writes its state again as a new member, and the survivors
    hand its rooms on.
    """

    def __init__(self, store: RedisCounts, health: NodeHealth, clock: Callable[[], float]) -> None:
        self.token = 0
        self.leader_since = 0.0
        self.owned: set[str] = set()
        # The minute this node closed itself as it stopped, per room (the next owner skips its rest).
        self.closed_on_stop: dict[str, int] = {}
        self._store = store
        self._health = health
        self._clock = clock
        health.on_degrade(self._lose)

    def _lose(self) -> None:
        self.token = 0
        self.owned.clear()

    def claimed(self, rooms: Iterable[str]) -> None:
        """This node now owns the sampling of ``rooms`` (it wrote them first, or they passed to it)."""
        self.owned.update(rooms)

    def replace(self, rooms: Iterable[str]) -> None:
        """The rooms this node owns after writing its whole state as a new member."""
        self.owned = set(rooms)

    def disowned(self, rooms: Iterable[str]) -> None:
        self.owned.difference_update(rooms)

    async def renew(self) -> None:
        """Holds the coordinator lease, or takes it when free, and picks up the rooms handed to this
        node (raises one of ``REDIS_FAILURES``)."""
        token = await self._store.sampler_lease()
        if token and token != self.token:
            self.leader_since = self._clock()
            logger.info("Coordinator lease taken", extra={"node": self._store.node_id, "token": token})
        self.token = token
        await self.take_handed()

    async def take_handed(self) -> None:
        """Picks up the rooms whose sampling passed to this node (on each heartbeat and sample tick)."""
        handed = await self._store.take_inbox()
        if handed:
            logger.info(
                "Sampling of rooms handed to this node",
                extra={"node": self._store.node_id, "rooms": len(handed)},
            )
            self.owned.update(handed)
