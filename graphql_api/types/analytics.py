"""Viewer analytics of an auction: bucketed points and a summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import strawberry

from graphql_api import analytics
from graphql_api.execution import PointSeries
from graphql_api.types.audience import UniqueViewerEstimate


@strawberry.type(description="The snapshots whose minute falls in one bucket, combined.")
class ViewerAnalyticsPoint:
    at: datetime = strawberry.field(description="Start of the bucket (UTC).")
    avg_viewers: float = strawberry.field(description="Mean viewers, weighted by each minute's samples.")
    peak_viewers: int
    min_viewers: int
    viewer_count: int = strawberry.field(description="Viewers at the end of the bucket's last minute.")
    samples: int = strawberry.field(description="Samples behind the point (12 per full minute by default).")

    @classmethod
    def from_domain(cls, point: analytics.AnalyticsPoint) -> ViewerAnalyticsPoint:
        return cls(
            at=point.at,
            avg_viewers=point.avg_viewers,
            peak_viewers=point.peak_viewers,
            min_viewers=point.min_viewers,
            viewer_count=point.viewer_count,
            samples=point.samples,
        )


@strawberry.type(description="Over the raw minutes of the range, whatever the bucket; zero when empty.")
class ViewerAnalyticsSummary:
    overall_peak: int
    overall_avg: float = strawberry.field(description="Mean viewers, weighted by each minute's samples.")
    duration_minutes: float = strawberry.field(
        description="From the start of the first minute to the end of the last."
    )
    first_at: datetime | None
    last_at: datetime | None
    snapshot_count: int
    unique_viewers: int | None = strawberry.field(
        description="Distinct viewers over the range, the estimate rounded: the snapshots' unique-viewer "
        "sketches merged across minutes and gateway nodes. Null when no minute of the range carries a "
        "sketch (the seed's documents, older gateways). When only some do, it counts the viewers of "
        "those (a lower bound for the range): `uniqueViewerEstimate.unsketchedSnapshots` says how many "
        "did not."
    )
    unique_viewer_estimate: UniqueViewerEstimate | None = strawberry.field(
        description="The same estimate with its 95% bounds and the minutes it rests on; null as "
        "`uniqueViewers`."
    )

    @classmethod
    def from_domain(cls, summary: analytics.AnalyticsSummary) -> ViewerAnalyticsSummary:
        unique = summary.unique_viewers
        return cls(
            unique_viewers=None if unique is None else round(unique.estimate),
            unique_viewer_estimate=None if unique is None else UniqueViewerEstimate.from_domain(unique),
            overall_peak=summary.overall_peak,
            overall_avg=summary.overall_avg,
            duration_minutes=summary.duration_minutes,
            first_at=summary.first_at,
            last_at=summary.last_at,
            snapshot_count=summary.snapshot_count,
        )


def resolve_points(root: ViewerAnalytics) -> Sequence[ViewerAnalyticsPoint]:
    """The points, oldest first: a series the execution completes in bulk, without an object per
    point (graphql_api.execution), or point by point should a selection need it."""
    return PointSeries(root.result.points, ViewerAnalyticsPoint.from_domain)


@strawberry.type(description="An auction's viewer counts over a range.")
class ViewerAnalytics:
    points: Sequence[ViewerAnalyticsPoint] = strawberry.field(resolver=resolve_points)
    summary: ViewerAnalyticsSummary
    bucket_seconds: int = strawberry.field(description="The bucket width used (what AUTO chose).")
    result: strawberry.Private[analytics.ViewerAnalytics]

    @classmethod
    def from_domain(cls, result: analytics.ViewerAnalytics) -> ViewerAnalytics:
        return cls(
            summary=ViewerAnalyticsSummary.from_domain(result.summary),
            bucket_seconds=result.bucket_seconds,
            result=result,
        )
