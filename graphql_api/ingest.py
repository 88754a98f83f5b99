"""The ingest service as this API sees it: settings and analytics over one long-lived gRPC channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, overload

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2_grpc as analytics_grpc

from graphql_api.analytics import (
    AUTO_BUCKET_LADDER,
    AUTO_TARGET_POINTS,
    BUCKET_WIDTHS,
    HOUR_SECONDS,
    TOO_MANY_POINTS,
    AnalyticsPoint,
    AnalyticsSummary,
    AuctionSettings,
    Bucket,
    InvalidQuery,
    TimeWindow,
    UniqueViewers,
    ViewerAnalytics,
    auto_bucket_seconds,
    auto_ladder,
    checked_bucket_seconds,
    explicit_bucket_seconds,
    utc,
)
from graphql_api.metrics import Metrics
from service_common.analytics_limits import is_point_limit_rejection
from service_common.internal_auth import internal_key_metadata
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

# The width of the call that brings ALL's summary (hence its span): AUTO's largest, 30 days, so a
# handful of points for all the stored data and a width the ingest service accepts like any other.
# Whole hours, because a store with hourly rollups answers such buckets from them (7 ms for 90 days
# on SQLite, against 150 ms from the raw minutes).
_OVERVIEW_BUCKET_SECONDS = AUTO_BUCKET_LADDER[-1]
assert _OVERVIEW_BUCKET_SECONDS % HOUR_SECONDS == 0
# Readiness must answer quickly even when the ingest service hangs.
_HEALTH_TIMEOUT_SECONDS = 1.0
# /readyz needs no credentials, so its answer is reused this long: a flood of probes costs the ingest
# service at most two calls per interval.
_READINESS_CACHE_SECONDS = 1.0
# The auction id of readiness's authenticated call: a valid id no auction is expected to have.
READINESS_PROBE_AUCTION = "readiness-probe"


class IngestUnavailable(Exception):
    """The ingest service cannot answer now (down, slow, or refusing our key); worth retrying later.

    ``code`` is the gRPC status the call ended with.
    """

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the ingest service answers this API's calls, and why not."""

    ready: bool
    reason: str = ""


class IngestRejected(Exception):
    """The ingest service refused the request as invalid; ``detail`` is its explanation, and
    ``point_limit`` whether it was for holding more points than it returns."""

    def __init__(self, detail: str, *, point_limit: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.point_limit = point_limit


class IngestNotFound(Exception):
    """The ingest service has no such thing (an alert rule under that auction); ``detail`` says what."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def channel_options() -> list[tuple[str, Any]]:
    """Options of the long-lived channel: keepalive finds a vanished ingest service between requests."""
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class IngestClient:
    """Calls the ingest service with the internal key and a deadline on every call."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        internal_key: str,
        timeout_seconds: float,
        metrics: Metrics,
        log: RateLimitedLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        snapshot_interval_seconds: int = 60,
    ) -> None:
        self._metadata = internal_key_metadata(internal_key)
        self._timeout = timeout_seconds
        self._metrics = metrics
        # Every line below can be caused by a caller (each query, each /readyz): rate-limited per cause.
        self._log = log
        self._clock = clock
        # AUTO follows the deployment's snapshot interval (see analytics.auto_ladder).
        self._ladder = auto_ladder(snapshot_interval_seconds)
        self._widths = BUCKET_WIDTHS | frozenset(self._ladder)
        self._settings = settings_grpc.AuctionSettingsServiceStub(channel)
        # The auction-audience queries (graphql_api.audience) call the same ingest service over it.
        self.channel = channel
        self._analytics = analytics_grpc.ViewerAnalyticsServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._readiness: tuple[float, Readiness] | None = None
        self._readiness_check: asyncio.Task[Readiness] | None = None

    async def _call(
        self, method_name: str, method: Any, request: Any, deadline_seconds: float | None = None
    ) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await method(request, metadata=self._metadata, timeout=deadline_seconds or self._timeout)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise IngestRejected(
                    error.details() or "invalid request",
                    point_limit=is_point_limit_rejection(error.trailing_metadata()),
                ) from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise IngestNotFound(error.details() or "not found") from None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                # Our own key is wrong: an operator's mistake, never the caller's.
                self._log.error(
                    "internal_key_refused", "Ingest service refused the internal key; check INTERNAL_API_KEY"
                )
            else:
                self._log.warning(
                    f"ingest_call_failed:{code.name}",
                    "Ingest call failed",
                    extra={"method": method_name, "code": code.name, "details": error.details()},
                )
            # Readiness said otherwise a moment ago, perhaps: the next /readyz checks again.
            self._readiness = None
            raise IngestUnavailable(f"{method_name}: {code.name}", code) from None
        finally:
            self._metrics.ingest_calls.inc((("method", method_name), ("code", code.name)))
            self._metrics.ingest_duration.observe((("method", method_name),), time.perf_counter() - started)

    async def call(self, method_name: str, method: Any, request: Any) -> Any:
        """One call with the key, the deadline, the metrics and the logging of every call here.

        Raises:
            IngestRejected: the ingest service refused the request as invalid.
            IngestNotFound: it has no such thing (NOT_FOUND).
            IngestUnavailable: it cannot answer now.
        """
        return await self._call(method_name, method, request)

    async def get_settings(self, auction_id: str) -> AuctionSettings:
        """The auction's settings (analytics off, no ``updated_at``, for an auction never configured)."""
        response = await self._call(
            "GetAuctionSettings",
            self._settings.GetAuctionSettings,
            settings_pb2.GetAuctionSettingsRequest(auction_id=auction_id),
        )
        return _settings_from_wire(response.settings)

    async def set_viewer_analytics(self, auction_id: str, enabled: bool) -> AuctionSettings:
        """Turns the auction's analytics on or off and returns its new settings."""
        response = await self._call(
            "SetViewerAnalytics",
            self._settings.SetViewerAnalytics,
            settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=enabled),
        )
        return _settings_from_wire(response.settings)

    async def viewer_analytics(
        self,
        auction_id: str,
        window: TimeWindow,
        bucket: Bucket,
        *,
        target_points: int = AUTO_TARGET_POINTS,
        unique_viewers: bool = False,
        point_unique_viewers: bool = False,
    ) -> ViewerAnalytics:
        """The auction's points and summary over ``window`` at ``bucket``.

        ``target_points`` is how many points AUTO may choose (the seed's REST route asks for the
        finest series within the request budget; GraphQL's AUTO keeps a chart's 500).
        ``unique_viewers`` asks for the summary's distinct viewers too (merged sketches: only when
        a query selects them); ``point_unique_viewers`` for each point's (a merge per point: the
        CSV export's).

        Raises:
            InvalidQuery: the window holds more points than the ingest service returns at this bucket.
            IngestUnavailable: the ingest service cannot answer now.
        """
        if bucket is not Bucket.AUTO:
            return await self._query(
                auction_id,
                window,
                explicit_bucket_seconds(bucket, window),
                unique_viewers,
                point_unique_viewers,
            )
        if window.start is not None and window.end is not None:
            width = auto_bucket_seconds(window.start, window.end, self._ladder, target_points)
            return await self._query(auction_id, window, width, unique_viewers, point_unique_viewers)
        return await self._auto_over_all_data(
            auction_id, window, target_points, unique_viewers, point_unique_viewers
        )

    async def _auto_over_all_data(
        self,
        auction_id: str,
        window: TimeWindow,
        target_points: int = AUTO_TARGET_POINTS,
        unique_viewers: bool = False,
        point_unique_viewers: bool = False,
    ) -> ViewerAnalytics:
        """AUTO over all stored data, whose span is known only once asked for: two calls.

        The first asks for one bucket holding everything, which costs one point and brings the
        summary, hence the span; the second asks for the series at the width AUTO picks for it.
        Measured on the SQLite store with its hourly rollups (90 days): 7 ms + 15 ms, where asking
        for hourly points and merging them here took 54 ms, mostly encoding and decoding 2,160 points.
        """
        overview = await self._query(auction_id, window, _OVERVIEW_BUCKET_SECONDS)
        width = _auto_width(overview.summary, self._ladder, target_points)
        return await self._query(auction_id, window, width, unique_viewers, point_unique_viewers)

    async def _query(
        self,
        auction_id: str,
        window: TimeWindow,
        bucket_seconds: int,
        unique_viewers: bool = False,
        point_unique_viewers: bool = False,
    ) -> ViewerAnalytics:
        request = analytics_pb2.QueryViewerAnalyticsRequest(
            auction_id=auction_id,
            bucket_seconds=checked_bucket_seconds(bucket_seconds, self._widths),
            include_unique_viewers=unique_viewers,
            include_point_unique_viewers=point_unique_viewers,
        )
        if window.start is not None:
            # The field is named `from`, a Python keyword, so it is reached by name.
            getattr(request, "from").CopyFrom(Timestamp(seconds=window.start))
        if window.end is not None:
            request.to.CopyFrom(Timestamp(seconds=window.end))
        try:
            response = await self._call("QueryViewerAnalytics", self._analytics.QueryViewerAnalytics, request)
        except IngestRejected as rejected:
            self._log.info(
                "ingest_refused_query", "Ingest refused an analytics query", extra={"detail": rejected.detail}
            )
            # The range is checked before the call, so the point limit refused here is over all
            # data; the ingest service's words for it name gRPC fields, the API says it its way.
            # Anything else (an auction id a MongoDB deployment of ObjectIds refuses) is its reason.
            raise InvalidQuery(TOO_MANY_POINTS if rejected.point_limit else rejected.detail) from None
        return ViewerAnalytics(
            points=WirePoints(response.points),
            summary=_summary_from_wire(response.summary),
            bucket_seconds=bucket_seconds,
        )

    async def readiness(self) -> Readiness:
        """Whether the ingest service serves and accepts this API's key (what every query needs).

        The answer is reused for a second (until a query finds the ingest service unavailable), and
        concurrent callers share one check: ``/readyz`` needs no credentials, and each check is two
        calls to the ingest service.
        """
        if self._readiness is not None and self._clock() - self._readiness[0] < _READINESS_CACHE_SECONDS:
            return self._readiness[1]
        if self._readiness_check is None or self._readiness_check.done():
            self._readiness_check = asyncio.create_task(self._check_readiness())
        # Shielded: one caller giving up (its client went away) must not cancel the others' check.
        answer = await asyncio.shield(self._readiness_check)
        self._readiness = (self._clock(), answer)
        return answer

    async def close(self) -> None:
        """Ends a readiness check still running (before the channel it uses closes)."""
        if self._readiness_check is not None and not self._readiness_check.done():
            self._readiness_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness_check

    async def _check_readiness(self) -> Readiness:
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=_HEALTH_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            self._log.info("ingest_not_ready", "Ingest service not ready", extra={"code": error.code().name})
            return Readiness(False, "ingest service unreachable")
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return Readiness(False, "ingest service not serving")
        # The health service needs no key, so SERVING says nothing about ours: one authenticated read,
        # the cheapest there is, proves that queries will be answered.
        try:
            await self._call(
                "GetAuctionSettings",
                self._settings.GetAuctionSettings,
                settings_pb2.GetAuctionSettingsRequest(auction_id=READINESS_PROBE_AUCTION),
                deadline_seconds=_HEALTH_TIMEOUT_SECONDS,
            )
        except IngestUnavailable as unavailable:
            # _call has logged why (rate-limited), the refused key as an operator's error.
            if unavailable.code == grpc.StatusCode.UNAUTHENTICATED:
                return Readiness(False, "ingest service refuses this API's internal key (INTERNAL_API_KEY)")
            return Readiness(False, "ingest service not answering queries")
        except IngestRejected:
            # Refused as a request, so the key was accepted: queries will be answered.
            pass
        return Readiness(True)


class WirePoints(Sequence[AnalyticsPoint]):
    """A response's points, each converted when read rather than all at once.

    Converting 20,000 points in one go held the event loop for about 40 ms; read a slice at a time
    (GraphQL completes the points in slices, the CSV export renders in a worker thread), no single
    step is that long.
    """

    def __init__(self, wire: Sequence[analytics_pb2.ViewerAnalyticsPoint]) -> None:
        self._wire = wire

    def __len__(self) -> int:
        return len(self._wire)

    @overload
    def __getitem__(self, index: int) -> AnalyticsPoint: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[AnalyticsPoint]: ...

    def __getitem__(self, index: int | slice) -> AnalyticsPoint | Sequence[AnalyticsPoint]:
        if isinstance(index, slice):
            return [_point_from_wire(point) for point in self._wire[index]]
        return _point_from_wire(self._wire[index])


def _auto_width(summary: AnalyticsSummary, ladder: Sequence[int], target_points: int) -> int:
    """AUTO's width for the span between the summary's first and last minutes (any width when empty)."""
    if summary.first_at is None or summary.last_at is None:
        return ladder[0]
    return auto_bucket_seconds(
        int(summary.first_at.timestamp()), int(summary.last_at.timestamp()) + 1, ladder, target_points
    )


def _settings_from_wire(message: settings_pb2.AuctionSettings) -> AuctionSettings:
    return AuctionSettings(
        auction_id=message.auction_id,
        enable_viewer_analytics=message.enable_viewer_analytics,
        updated_at=message.updated_at.ToDatetime(tzinfo=UTC) if message.HasField("updated_at") else None,
    )


def _point_from_wire(message: analytics_pb2.ViewerAnalyticsPoint) -> AnalyticsPoint:
    return AnalyticsPoint(
        start=message.bucket_start.seconds,
        avg_viewers=message.avg_viewers,
        peak_viewers=message.peak_viewers,
        min_viewers=message.min_viewers,
        viewer_count=message.viewer_count,
        samples=message.sample_count,
        unique_viewers=message.unique_viewers.estimate if message.HasField("unique_viewers") else None,
    )


def _summary_from_wire(message: analytics_pb2.ViewerAnalyticsSummary) -> AnalyticsSummary:
    return AnalyticsSummary(
        overall_peak=message.overall_peak,
        overall_avg=message.overall_avg,
        duration_minutes=message.duration_minutes,
        first_at=utc(message.first_at.seconds) if message.HasField("first_at") else None,
        last_at=utc(message.last_at.seconds) if message.HasField("last_at") else None,
        snapshot_count=message.snapshot_count,
        unique_viewers=unique_viewers_from_wire(message.unique_viewers)
        if message.HasField("unique_viewers")
        else None,
    )


def unique_viewers_from_wire(message: audience_pb2.UniqueViewerCount) -> UniqueViewers:
    return UniqueViewers(
        estimate=message.estimate,
        lower_bound=message.lower_bound,
        upper_bound=message.upper_bound,
        identified_estimate=message.identified_estimate,
        anonymous_estimate=message.anonymous_estimate,
        exact=message.exact,
        sketched_snapshots=message.sketched_snapshots,
        unsketched_snapshots=message.unsketched_snapshots,
    )
