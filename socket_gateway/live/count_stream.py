"""``LiveCountService.WatchViewerCounts``: the gateway's live counts streamed to the other services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import live_count_service_pb2 as pb

from service_common.auction_ids import auction_id_problem
from service_common.log_limits import RateLimitedLog
from socket_gateway.live.feed import CountFeed
from socket_gateway.live.rooms import RoomCounts

logger = logging.getLogger(__name__)

# How long a new stream waits for the counts to be known (with Redis: the first poll) before it
# sends what the gateway has: a stream must start even while Redis is down.
PRIME_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What one gateway allows its live-count streams (GATEWAY_LIVE_* variables)."""

    max_streams: int = 1000
    max_auctions_per_stream: int = 10_000
    # At most one update per auction per interval on a stream (500 ms: two a second).
    interval_seconds: float = 0.5


class StreamWatcher:
    """One stream's view of the feed: each watched auction's latest unsent counts, coalesced.

    The first change after a quiet interval is due at once; later ones within the interval fold into
    one that is due when the interval ends and carries the latest counts. What waits is one entry per
    auction, however slowly the consumer reads: bounded by the auctions the stream watches.
    """

    def __init__(self, auction_ids: list[str], interval_seconds: float, now: Callable[[], float]) -> None:
        self.auction_ids = auction_ids
        self._interval = interval_seconds
        self._now = now
        self._pending: dict[str, RoomCounts] = {}
        self._sent: dict[str, RoomCounts] = {}
        self._sent_at: dict[str, float] = {}
        self._wake = asyncio.Event()

    def counts_changed(self, auction_id: str, counts: RoomCounts) -> None:
        self._pending[auction_id] = counts
        self._wake.set()

    def sent(self, auction_id: str, counts: RoomCounts) -> None:
        """Notes that ``counts`` went out for the auction now (the stream's first response included)."""
        self._pending.pop(auction_id, None)
        self._sent[auction_id] = counts
        self._sent_at[auction_id] = self._now()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def next_batch(self) -> list[tuple[str, RoomCounts]]:
        """Waits until some auction's update is due; returns every due one (never an empty list)."""
        while True:
            now = self._now()
            due: list[tuple[str, RoomCounts]] = []
            next_due: float | None = None
            for auction_id, counts in list(self._pending.items()):
                if counts == self._sent.get(auction_id):
                    # Changed and changed back within the interval: nothing new to tell.
                    del self._pending[auction_id]
                    continue
                at = self._sent_at.get(auction_id, now - self._interval) + self._interval
                if at <= now:
                    due.append((auction_id, counts))
                elif next_due is None or at < next_due:
                    next_due = at
            if due:
                return due
            self._wake.clear()
            if next_due is None:
                await self._wake.wait()
            else:
                # Woken early by a change of another auction, or at the end of this one's interval.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_due - now))


class LiveCountServicer:
    """Streams the feed's counts of the auctions a caller asks for (the internal key is checked before).

    Args:
        feed: the gateway's live counts.
        limits: streams, auctions per stream, interval.
        clock: wall-clock seconds, for each update's ``at``.
        monotonic: seconds for the interval (the loop's clock).
        log: the rate-limited log for what callers can cause.
    """

    def __init__(
        self,
        feed: CountFeed,
        limits: StreamLimits,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        log: RateLimitedLog,
    ) -> None:
        self._feed = feed
        self._limits = limits
        self._clock = clock
        self._monotonic = monotonic
        self._log = log
        self.open_streams = 0
        self.updates_sent_total = 0

    async def WatchViewerCounts(
        self,
        request: pb.WatchViewerCountsRequest,
        context: grpc.aio.ServicerContext[pb.WatchViewerCountsRequest, pb.WatchViewerCountsResponse],
    ) -> None:
        auction_ids = list(dict.fromkeys(request.auction_ids))
        problem = self._problem(auction_ids)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if self.open_streams >= self._limits.max_streams:
            self._log.warning(
                "live_stream_refused",
                "Live count stream refused: too many open",
                extra={"open": self.open_streams},
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this gateway serves at most {self._limits.max_streams} live count streams",
            )
        watcher = StreamWatcher(auction_ids, self._limits.interval_seconds, self._monotonic)
        self.open_streams += 1
        # Watching before reading the current counts: a change in between reaches the watcher.
        self._feed.watch(watcher, auction_ids)
        try:
            await self._feed.wait_primed(PRIME_TIMEOUT_SECONDS)
            first = [(auction_id, self._feed.current(auction_id)) for auction_id in auction_ids]
            await self._write(context, watcher, first)
            while True:
                await self._write(context, watcher, await watcher.next_batch())
        finally:
            self._feed.unwatch(watcher)
            self.open_streams -= 1

    async def _write(
        self,
        context: grpc.aio.ServicerContext[pb.WatchViewerCountsRequest, pb.WatchViewerCountsResponse],
        watcher: StreamWatcher,
        batch: list[tuple[str, RoomCounts]],
    ) -> None:
        at = Timestamp()
        at.FromNanoseconds(int(self._clock() * 1e9))
        updates = []
        for auction_id, counts in batch:
            watcher.sent(auction_id, counts)
            updates.append(
                pb.ViewerCountUpdate(
                    auction_id=auction_id,
                    viewer_count=counts.viewer_count,
                    unique_viewers=counts.unique_viewers,
                    at=at,
                )
            )
        # Waits while the consumer does not read (HTTP/2 flow control); meanwhile the watcher keeps
        # only each auction's latest counts.
        await context.write(pb.WatchViewerCountsResponse(updates=updates))
        self.updates_sent_total += len(updates)

    def _problem(self, auction_ids: list[str]) -> str | None:
        if not auction_ids:
            return "name at least one auction in auction_ids"
        if len(auction_ids) > self._limits.max_auctions_per_stream:
            limit = self._limits.max_auctions_per_stream
            return f"at most {limit} auctions per stream, got {len(auction_ids)}"
        for auction_id in auction_ids:
            problem = auction_id_problem(auction_id)
            if problem is not None:
                return f"{problem}: {auction_id[:140]!r}"
        return None
