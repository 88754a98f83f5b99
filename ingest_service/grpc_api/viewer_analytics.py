"""``ViewerAnalyticsService``: stored snapshots read back as bucketed points and a summary."""

from __future__ import annotations

import grpc
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2

from ingest_service.domain import (
    AnalyticsPoint,
    AnalyticsRange,
    AnalyticsSummary,
    AuctionIdType,
    RangeTotals,
    StorageUnavailable,
)
from ingest_service.grpc_api.aborts import abort, abort_storage_unavailable
from ingest_service.grpc_api.auction_events import unique_viewers_to_wire
from ingest_service.grpc_api.conversions import point_to_wire, summary_to_wire
from ingest_service.sketches import UniqueViewerCount
from ingest_service.storage.port import SnapshotStore
from ingest_service.validation import accepted_auction_id_problem
from service_common.analytics_limits import MAX_POINTS, point_limit_metadata
from service_common.log_limits import RateLimitedLog

# MAX_POINTS (service_common.analytics_limits): seven days of minutes (10,080) fit; a response
# stays far below gRPC's default 4 MiB message limit.
# The widest bucket: 30 days, the widest the GraphQL API offers (AUTO's largest). Wider ones only
# move the epoch-aligned start of the one point away from the data (at 2**32 - 1 s: to 1970).
MAX_BUCKET_SECONDS = 30 * 86_400


def bucket_problem(bucket_seconds: int, snapshot_interval_seconds: int) -> str | None:
    """Why ``bucket_seconds`` is not a width to answer, or None when it is.

    0 is one point per snapshot. Otherwise the width is a whole number of snapshot intervals, so that
    every bucket starts where a snapshot's interval starts and holds whole snapshots (a 7 s bucket of
    1-minute snapshots would stamp each minute up to 6 s before it began), and at most 30 days.
    """
    if bucket_seconds == 0:
        return None
    if bucket_seconds % snapshot_interval_seconds or bucket_seconds > MAX_BUCKET_SECONDS:
        return (
            f"bucket_seconds must be 0 (one point per snapshot) or a multiple of {snapshot_interval_seconds}"
            f" (the snapshot interval) up to {MAX_BUCKET_SECONDS} (30 days), got {bucket_seconds}"
        )
    return None


def point_bound(totals: RangeTotals, bucket_seconds: int) -> int:
    """The most points a query can return: one per snapshot, or one per bucket the data spans."""
    if totals.first_minute is None or totals.last_minute is None:
        return 0
    if bucket_seconds == 0:
        return totals.snapshot_count
    spanned = totals.last_minute // bucket_seconds - totals.first_minute // bucket_seconds + 1
    return min(totals.snapshot_count, spanned)


async def point_unique_viewers(
    store: SnapshotStore,
    query: AnalyticsRange,
    bucket_seconds: int,
    snapshot_interval_seconds: int,
    points: list[AnalyticsPoint],
) -> list[UniqueViewerCount]:
    """Each point's distinct viewers: its bucket's part of the range, merged as a range's are.

    One ``query_unique_viewers`` per point, so each store's own rule applies (whole hours from its
    hourly rollups, the rest minute by minute): a chart's ~500 points cost about 500 of those reads.
    """
    width = bucket_seconds or snapshot_interval_seconds  # 0: a point per snapshot, its own interval
    counts = []
    for point in points:
        start, end = point.bucket_start, point.bucket_start + width
        if query.start is not None:
            start = max(start, query.start)
        if query.end is not None:
            end = min(end, query.end)
        counts.append(await store.query_unique_viewers(AnalyticsRange(query.auction_id, start, end)))
    return counts


class ViewerAnalyticsServicer:
    def __init__(
        self,
        store: SnapshotStore,
        snapshot_interval_seconds: int,
        log: RateLimitedLog,
        auction_id_type: AuctionIdType = AuctionIdType.AUTO,
    ) -> None:
        self._store = store
        self._snapshot_interval_seconds = snapshot_interval_seconds
        self._auction_id_type = auction_id_type
        self._log = log

    async def QueryViewerAnalytics(
        self, request: analytics_pb2.QueryViewerAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> analytics_pb2.QueryViewerAnalyticsResponse:
        problem = accepted_auction_id_problem(request.auction_id, self._auction_id_type)
        if problem:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        start = getattr(request, "from").seconds if request.HasField("from") else None
        end = request.to.seconds if request.HasField("to") else None
        if start is not None and end is not None and start >= end:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "'from' must be before 'to'")
        problem = bucket_problem(request.bucket_seconds, self._snapshot_interval_seconds)
        if problem:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        query = AnalyticsRange(auction_id=request.auction_id, start=start, end=end)
        try:
            totals = await self._store.query_totals(query)
            bound = point_bound(totals, request.bucket_seconds)
            if bound > MAX_POINTS:
                await abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the range holds up to {bound} points at this bucket size, more than {MAX_POINTS}; "
                    "choose a larger bucket_seconds or a shorter range",
                    point_limit_metadata(),
                )
            points = await self._store.query_points(query, request.bucket_seconds) if bound else []
            unique = await self._store.query_unique_viewers(query) if request.include_unique_viewers else None
            point_uniques = (
                await point_unique_viewers(
                    self._store, query, request.bucket_seconds, self._snapshot_interval_seconds, points
                )
                if request.include_point_unique_viewers
                else []
            )
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        summary = summary_to_wire(AnalyticsSummary.from_totals(totals, self._snapshot_interval_seconds))
        # Unset when no snapshot of the range carries a sketch: nothing to estimate from, not zero viewers.
        if unique is not None and unique.sketched_snapshots:
            summary.unique_viewers.CopyFrom(unique_viewers_to_wire(unique))
        wire_points = [point_to_wire(point) for point in points]
        for message, point_unique in zip(wire_points, point_uniques, strict=False):
            if point_unique.sketched_snapshots:
                message.unique_viewers.CopyFrom(unique_viewers_to_wire(point_unique))
        return analytics_pb2.QueryViewerAnalyticsResponse(points=wire_points, summary=summary)
