"""Translations between protobuf messages and domain types."""

from __future__ import annotations

import math

from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from ingest_service.domain import AnalyticsPoint, AnalyticsSummary, AuctionSettings, Snapshot, SnapshotOutcome
from ingest_service.ingestion import Rejection
from service_common import viewer_snapshot

OUTCOME_TO_WIRE = {
    SnapshotOutcome.STORED: ingest_pb2.SNAPSHOT_OUTCOME_STORED,
    SnapshotOutcome.DUPLICATE: ingest_pb2.SNAPSHOT_OUTCOME_DUPLICATE,
    SnapshotOutcome.SKIPPED_ANALYTICS_DISABLED: ingest_pb2.SNAPSHOT_OUTCOME_SKIPPED_ANALYTICS_DISABLED,
    SnapshotOutcome.REJECTED: ingest_pb2.SNAPSHOT_OUTCOME_REJECTED,
}


def timestamp_of(epoch_seconds: float) -> Timestamp:
    """The timestamp nearest ``epoch_seconds``, to the nanosecond."""
    whole = math.floor(epoch_seconds)
    # The fraction is exact in floating point; scaling the whole value to nanoseconds would not be.
    carry, nanos = divmod(round((epoch_seconds - whole) * 1e9), 1_000_000_000)
    return Timestamp(seconds=whole + carry, nanos=nanos)


def snapshot_from_wire(message: snapshot_pb2.ViewerSnapshot) -> Snapshot | Rejection:
    """The domain snapshot, or a rejection when the message cannot stand for one."""
    try:
        return viewer_snapshot.from_wire(message)
    except viewer_snapshot.NotASnapshot as problem:
        return Rejection(str(problem))


def settings_to_wire(settings: AuctionSettings) -> settings_pb2.AuctionSettings:
    message = settings_pb2.AuctionSettings(
        auction_id=settings.auction_id, enable_viewer_analytics=settings.enable_viewer_analytics
    )
    if settings.updated_at is not None:
        message.updated_at.CopyFrom(timestamp_of(settings.updated_at))
    return message


def point_to_wire(point: AnalyticsPoint) -> analytics_pb2.ViewerAnalyticsPoint:
    return analytics_pb2.ViewerAnalyticsPoint(
        bucket_start=Timestamp(seconds=point.bucket_start),
        avg_viewers=point.avg_viewers,
        peak_viewers=point.peak_viewers,
        min_viewers=point.min_viewers,
        viewer_count=point.viewer_count,
        sample_count=point.sample_count,
    )


def summary_to_wire(summary: AnalyticsSummary) -> analytics_pb2.ViewerAnalyticsSummary:
    message = analytics_pb2.ViewerAnalyticsSummary(
        overall_peak=summary.overall_peak,
        overall_avg=summary.overall_avg,
        duration_minutes=summary.duration_minutes,
        snapshot_count=summary.snapshot_count,
    )
    if summary.first_at is not None:
        message.first_at.CopyFrom(Timestamp(seconds=summary.first_at))
    if summary.last_at is not None:
        message.last_at.CopyFrom(Timestamp(seconds=summary.last_at))
    return message
