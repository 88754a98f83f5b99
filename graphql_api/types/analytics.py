"""Viewer analytics of an auction: bucketed points and a summary."""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry

from graphql_api import analytics

# Points built and completed between two returns to the event loop. GraphQL completes each point
# field by field, ~25 us a point on an idle machine: 20,000 points at once held every other request
# for 0.5-0.8 s; 100 at a time, a few milliseconds.
POINTS_PER_SLICE = 100


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

    @classmethod
    def from_domain(cls, summary: analytics.AnalyticsSummary) -> ViewerAnalyticsSummary:
        return cls(
            overall_peak=summary.overall_peak,
            overall_avg=summary.overall_avg,
            duration_minutes=summary.duration_minutes,
            first_at=summary.first_at,
            last_at=summary.last_at,
            snapshot_count=summary.snapshot_count,
        )


async def resolve_points(root: ViewerAnalytics) -> strawberry.Streamable[ViewerAnalyticsPoint]:
    """The points, oldest first, handing the event loop back every ``POINTS_PER_SLICE`` points.

    An async generator is a list to GraphQL (the schema says ``[ViewerAnalyticsPoint!]!``) that
    graphql-core completes item by item as it is produced, so the pauses here split the completion.
    """
    for index, point in enumerate(root.result.points):
        if index and index % POINTS_PER_SLICE == 0:
            await asyncio.sleep(0)
        yield ViewerAnalyticsPoint.from_domain(point)


@strawberry.type(description="An auction's viewer counts over a range.")
class ViewerAnalytics:
    points: strawberry.Streamable[ViewerAnalyticsPoint] = strawberry.field(resolver=resolve_points)
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
