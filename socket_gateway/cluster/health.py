"""Whether this node's counts are in Redis, and what the node does the moment they are not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.rooms import RoomRegistry

logger = logging.getLogger(__name__)


class NodeHealth:
    """This node's standing in the cluster: ``healthy`` while Redis holds its counts.

    Every part of the node that meets a Redis failure calls ``degrade``: the node logs at ERROR once
    per outage, ``healthy`` turns False, each room is told its local counts by ``local`` (this node's
    sockets only) and whatever holds only while the node is in the cluster lets go (``on_degrade``:
    the sampler lease). The node lease brings the node back (``recovered``) once Redis answers and the
    node's whole state is written again.
    """

    def __init__(self, node_id: str, registry: RoomRegistry, local: CountBroadcaster) -> None:
        self.node_id = node_id
        self.healthy = False
        # Set once this node has written its state to Redis.
        self.resynced = asyncio.Event()
        self._registry = registry
        self._local = local
        # True from the ERROR log of an outage until Redis answers again (one ERROR per outage).
        self._unreachable = False
        self._on_degrade: list[Callable[[], None]] = []

    def on_degrade(self, hook: Callable[[], None]) -> None:
        """Calls ``hook`` on every ``degrade``."""
        self._on_degrade.append(hook)

    def degrade(self, error: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            logger.error(
                "Redis unreachable: serving this node's sockets with local counts, not ready, no snapshots",
                extra={"node": self.node_id, "error": repr(error)},
            )
        if self.healthy:
            for auction_id in self._registry.active_rooms():
                self._local.room_changed(auction_id)
        self.healthy = False
        for hook in self._on_degrade:
            hook()

    def recovered(self, lease_lapsed: bool, live_nodes: int) -> None:
        """The node's whole state is in Redis again (``lease_lapsed``: because its lease had lapsed)."""
        self.healthy = True
        self.resynced.set()
        if self._unreachable:
            self._unreachable = False
            logger.warning(
                "Redis reachable again; this node's counts re-synced", extra={"node": self.node_id}
            )
        elif lease_lapsed and live_nodes > 1:
            logger.info("Joined the gateway cluster", extra={"node": self.node_id})
