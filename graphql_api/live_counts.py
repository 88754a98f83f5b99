"""Live viewer counts from the socket gateway's gRPC stream, shared by every subscriber of an auction.

The API never reads the gateway's memory or Redis: it holds one ``LiveCountService.WatchViewerCounts``
stream per auction somebody subscribes to (over one channel to ``GATEWAY_GRPC_TARGET``), and each
subscriber of that auction reads the stream's latest counts. A subscriber that reads slowly (its
WebSocket does not drain) skips to the latest counts instead of queueing: one slot per subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import grpc
from viewer_analytics.v1 import live_count_service_pb2 as pb
from viewer_analytics.v1 import live_count_service_pb2_grpc as pb_grpc

from service_common.cancellation import cancel_and_wait, raise_if_cancel_requested
from service_common.internal_auth import internal_key_metadata
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

# The gateway's streams carry at most two updates per auction a second (their ``at`` stamps are at
# least this far apart); a subscriber is held to the same across a reconnection of the upstream stream,
# whose first response may follow the last update sooner.
MIN_INTERVAL_SECONDS = 0.5
# The gateway stamps ``at`` from the wall clock in whole nanoseconds; a hair of slack for rounding.
_STAMP_SLACK_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class LiveCount:
    """One auction's live counts as the gateway read them at ``at`` (epoch seconds)."""

    auction_id: str
    viewer_count: int
    unique_viewers: int
    at: float
    # What the API's layers make of these counts once for every subscriber they reach (the GraphQL
    # event object), keyed by who made it.
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)


class LiveCountSubscription:
    """One subscriber's view of an auction's counts: each new value once, at most two a second."""

    def __init__(self, upstream: _Upstream) -> None:
        self._upstream = upstream
        self._changed = asyncio.Event()
        self._last: tuple[int, int] | None = None
        self._last_stamp = float("-inf")
        self.closed = False
        if upstream.latest is not None:
            self._changed.set()

    def offer(self) -> None:
        self._changed.set()

    async def next(self) -> LiveCount:
        """Waits for counts this subscriber has not been given; returns the latest."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            count = self._upstream.latest
            if count is None:
                continue
            sent_stamp = count.at
            early = self._last_stamp + MIN_INTERVAL_SECONDS - _STAMP_SLACK_SECONDS - count.at
            if early > 0:
                # Only after the upstream stream was reopened: the pause is the point, and what
                # arrives meanwhile is folded into the latest value.
                await asyncio.sleep(early)
                count = self._upstream.latest
                assert count is not None
                sent_stamp = max(count.at, self._last_stamp + MIN_INTERVAL_SECONDS)
            if (count.viewer_count, count.unique_viewers) == self._last:
                continue
            self._last = (count.viewer_count, count.unique_viewers)
            self._last_stamp = sent_stamp
            return count


class _Upstream:
    """One auction's stream from the gateway and the subscribers sharing it."""

    def __init__(self, auction_id: str) -> None:
        self.auction_id = auction_id
        self.latest: LiveCount | None = None
        self.subscribers: set[LiveCountSubscription] = set()
        self.task: asyncio.Task[None] | None = None

    def offer(self, count: LiveCount) -> None:
        self.latest = count
        for subscriber in self.subscribers:
            subscriber.offer()


class LiveCounts:
    """The live counts of the auctions this API's subscribers watch (the per-token budget is the
    subscription's: graphql_api/subscriptions/budget.py).

    Args:
        channel: the channel to the gateway's internal gRPC port.
        internal_api_key: sent with every call.
        log: the rate-limited log (a gateway that is down must not flood it).
        backoff: first and largest delay between attempts to reopen a failed stream, seconds.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        internal_api_key: str,
        *,
        log: RateLimitedLog,
        backoff: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self._stub = pb_grpc.LiveCountServiceStub(channel)
        self._metadata = internal_key_metadata(internal_api_key)
        self._log = log
        self._backoff = backoff
        self._upstreams: dict[str, _Upstream] = {}
        self.updates_received_total = 0

    @property
    def upstream_streams(self) -> int:
        return len(self._upstreams)

    def subscribe(self, auction_id: str) -> LiveCountSubscription:
        """A new subscription to ``auction_id``'s counts."""
        upstream = self._upstreams.get(auction_id)
        if upstream is None:
            upstream = self._upstreams[auction_id] = _Upstream(auction_id)
            upstream.task = asyncio.create_task(self._follow(upstream), name=f"live-counts-{auction_id}")
        subscription = LiveCountSubscription(upstream)
        upstream.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: LiveCountSubscription) -> None:
        """Ends ``subscription``; the auction's stream closes with its last subscriber."""
        if subscription.closed:
            return
        subscription.closed = True
        upstream = subscription._upstream
        upstream.subscribers.discard(subscription)
        if not upstream.subscribers:
            del self._upstreams[upstream.auction_id]
            if upstream.task is not None:
                upstream.task.cancel()

    async def _follow(self, upstream: _Upstream) -> None:
        """Keeps the auction's stream open while it has subscribers, reopening it after a failure."""
        delay = self._backoff[0]
        request = pb.WatchViewerCountsRequest(auction_ids=[upstream.auction_id])
        while True:
            call = self._stub.WatchViewerCounts(request, metadata=self._metadata)
            try:
                async for response in call:
                    delay = self._backoff[0]
                    for update in response.updates:
                        self.updates_received_total += 1
                        upstream.offer(
                            LiveCount(
                                update.auction_id,
                                update.viewer_count,
                                update.unique_viewers,
                                update.at.ToNanoseconds() / 1e9,
                            )
                        )
                self._log.warning(
                    "live_counts_stream_ended", "Live count stream ended by the gateway; reopening"
                )
            except grpc.aio.AioRpcError as error:
                self._log.warning(
                    "live_counts_stream_failed",
                    "Live count stream from the gateway failed; reopening with backoff",
                    extra={"code": error.code().name, "details": error.details()},
                )
            finally:
                call.cancel()
            # unsubscribe() cancels this task without waiting: one cancellation lost inside the
            # stream's calls must not keep an auction nobody watches streaming.
            raise_if_cancel_requested()
            # Reopening after a delay that grows while the gateway stays away; jitter spreads the
            # streams of many auctions apart.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff[1])

    async def close(self) -> None:
        """Cancels every upstream stream (the app stops)."""
        tasks = [upstream.task for upstream in self._upstreams.values() if upstream.task is not None]
        self._upstreams.clear()
        await cancel_and_wait(*tasks)
