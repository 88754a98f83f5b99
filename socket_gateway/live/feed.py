"""Every change of an auction's live counts, zero included, for listeners beyond the room's sockets.

The room's own ``viewerCountUpdate`` is no use to a listener such as the live-count gRPC stream or an
alert evaluator: it is never sent when a room empties (nobody is left to tell), and with Redis only
the node that wins a room's publish gate emits it. The :class:`CountFeed` therefore has its own
sources:

- alone (no ``REDIS_URL``): :class:`FeedingRoomChanges` stands between the Socket.IO handlers and the
  broadcaster and publishes the registry's exact counts on every change, synchronously;
- with Redis: :class:`ClusterCountPoller` reads the global counts of the watched auctions every
  interval while anybody listens, and publishes what changed (an auction gone from Redis has dropped
  to zero). A listener of every auction hears, with Redis, only the auctions somebody watches.

Listeners are called synchronously on the event loop and must not block: note the counts, wake a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from service_common.log_limits import RateLimitedLog
from socket_gateway.cluster.node import ClusterNode
from socket_gateway.cluster.store import REDIS_FAILURES
from socket_gateway.live.rooms import EMPTY, RoomCounts

logger = logging.getLogger(__name__)


class CountListener(Protocol):
    """Told an auction's new counts; called on the event loop, so it must return at once."""

    def counts_changed(self, auction_id: str, counts: RoomCounts) -> None: ...


class RoomChanges(Protocol):
    """Told by the Socket.IO handlers when a room's counts may have changed (broadcaster or cluster)."""

    def room_changed(self, auction_id: str) -> None: ...


class CountFeed:
    """The latest counts of every watched auction, and the listeners told when they change.

    A listener watches a set of auctions, or every auction (``auction_ids=None``). ``publish`` with
    counts equal to the last ones published changes nothing, so a source may publish freely. What is
    kept is bounded by the auctions with viewers: an auction that drops to zero is forgotten once its
    listeners have been told.
    """

    def __init__(self) -> None:
        self._latest: dict[str, RoomCounts] = {}
        self._by_auction: dict[str, set[CountListener]] = {}
        self._everything: set[CountListener] = set()
        self._watched: dict[CountListener, frozenset[str] | None] = {}
        self._listened = asyncio.Event()
        # Set while the latest counts are known (at once when alone; after the first poll with Redis).
        self._primed = asyncio.Event()

    def watch(self, listener: CountListener, auction_ids: Iterable[str] | None = None) -> None:
        """Starts telling ``listener`` the changes of ``auction_ids`` (None: of every auction)."""
        self.unwatch(listener)
        ids = None if auction_ids is None else frozenset(auction_ids)
        self._watched[listener] = ids
        if ids is None:
            self._everything.add(listener)
        else:
            for auction_id in ids:
                self._by_auction.setdefault(auction_id, set()).add(listener)
        self._listened.set()

    def unwatch(self, listener: CountListener) -> None:
        """Stops telling ``listener`` anything; unknown listeners are ignored."""
        ids = self._watched.pop(listener, None)
        self._everything.discard(listener)
        for auction_id in ids or ():
            listeners = self._by_auction.get(auction_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._by_auction[auction_id]
        if not self._watched:
            self._listened.clear()

    @property
    def listeners(self) -> int:
        return len(self._watched)

    def watched_auctions(self) -> frozenset[str]:
        """The auctions some listener watches by name."""
        return frozenset(self._by_auction)

    async def wait_listened(self) -> None:
        """Returns once at least one listener watches."""
        await self._listened.wait()

    def current(self, auction_id: str) -> RoomCounts:
        """The auction's latest counts (zero of both for an auction nobody watches)."""
        return self._latest.get(auction_id, EMPTY)

    async def wait_primed(self, seconds: float) -> bool:
        """Waits up to ``seconds`` until the latest counts are known; whether they are."""
        try:
            await asyncio.wait_for(self._primed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def set_primed(self, primed: bool) -> None:
        """Says whether ``current`` holds the latest counts (a polling source clears it while it stops)."""
        if primed:
            self._primed.set()
        else:
            self._primed.clear()
            self._latest.clear()

    def publish(self, auction_id: str, counts: RoomCounts) -> None:
        """Records the auction's counts and tells its listeners if they changed."""
        if self._latest.get(auction_id, EMPTY) == counts:
            return
        if counts == EMPTY:
            del self._latest[auction_id]
        else:
            self._latest[auction_id] = counts
        for listener in (*self._by_auction.get(auction_id, ()), *self._everything):
            listener.counts_changed(auction_id, counts)

    def publish_all(self, counts: dict[str, RoomCounts]) -> None:
        """Replaces every auction's counts by ``counts``: an auction missing from it has zero of both."""
        for auction_id in [a for a in self._latest if a not in counts]:
            self.publish(auction_id, EMPTY)
        for auction_id, room in counts.items():
            self.publish(auction_id, room)


class FeedingRoomChanges:
    """The handlers' ``room_changed``, passed on to ``inner`` and published to the feed (a gateway alone).

    Args:
        inner: the broadcaster that tells the room.
        feed: where the exact counts go.
        counts_of: the registry's exact counts of a room.
    """

    def __init__(self, inner: RoomChanges, feed: CountFeed, counts_of: Callable[[str], RoomCounts]) -> None:
        self._inner = inner
        self._feed = feed
        self._counts_of = counts_of
        feed.set_primed(True)

    def room_changed(self, auction_id: str) -> None:
        self._inner.room_changed(auction_id)
        self._feed.publish(auction_id, self._counts_of(auction_id))


class ClusterCountPoller:
    """With Redis: the watched auctions' global counts read every ``interval_seconds`` while anybody listens.

    Only the auctions the listeners watch are read (O(1) each, pipelined in chunks: a listener may
    watch thousands), never every room of the cluster. While Redis fails the feed keeps the last
    counts it read (and says so in the log); the counts move again once Redis answers.
    """

    def __init__(
        self,
        cluster: ClusterNode,
        feed: CountFeed,
        interval_seconds: float,
        log: RateLimitedLog | None = None,
    ) -> None:
        self._cluster = cluster
        self._feed = feed
        self._interval = interval_seconds
        self._log = log or RateLimitedLog(logger)

    async def run(self) -> None:
        """The polling loop (supervised by the app); returns only when cancelled."""
        while True:
            if not self._feed.listeners:
                self._feed.set_primed(False)
                await self._feed.wait_listened()
            await self.poll_once()
            # A poll every interval is the point: there is no event for "counts changed on another node".
            await asyncio.sleep(self._interval)

    async def poll_once(self) -> None:
        if not self._cluster.ready:
            self._log.warning(
                "live_counts_redis_down", "Live counts not updated: Redis unreachable (last counts kept)"
            )
            return
        try:
            counts = await self._cluster.store.counts_of(self._feed.watched_auctions())
        except REDIS_FAILURES as error:
            self._log.warning(
                "live_counts_redis_failed",
                "Live counts not updated: reading them from Redis failed (last counts kept)",
                extra={"error": repr(error)},
            )
            return
        self._feed.publish_all(counts)
        self._feed.set_primed(True)
