"""Combinable partial aggregates of snapshots, so that rollups and raw rows can be merged exactly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingest_service.domain import AnalyticsPoint, RangeTotals


@dataclass(frozen=True, slots=True)
class PartialAggregate:
    """Sums, extremes and the latest snapshot's count of some snapshots starting in one bucket."""

    bucket_start: int
    snapshot_count: int
    weighted_viewer_sum: float
    sample_total: int
    peak_viewers: int
    min_viewers: int
    first_minute: int
    last_minute: int
    last_viewer_count: int

    def merged(self, other: PartialAggregate) -> PartialAggregate:
        latest = self if self.last_minute >= other.last_minute else other
        return PartialAggregate(
            bucket_start=self.bucket_start,
            snapshot_count=self.snapshot_count + other.snapshot_count,
            weighted_viewer_sum=self.weighted_viewer_sum + other.weighted_viewer_sum,
            sample_total=self.sample_total + other.sample_total,
            peak_viewers=max(self.peak_viewers, other.peak_viewers),
            min_viewers=min(self.min_viewers, other.min_viewers),
            first_minute=min(self.first_minute, other.first_minute),
            last_minute=latest.last_minute,
            last_viewer_count=latest.last_viewer_count,
        )

    def to_point(self) -> AnalyticsPoint:
        return AnalyticsPoint(
            bucket_start=self.bucket_start,
            avg_viewers=self.weighted_viewer_sum / self.sample_total,
            peak_viewers=self.peak_viewers,
            min_viewers=self.min_viewers,
            viewer_count=self.last_viewer_count,
            sample_count=self.sample_total,
        )


def merge_by_bucket(parts: Iterable[PartialAggregate]) -> list[PartialAggregate]:
    """One aggregate per bucket start, oldest first."""
    merged: dict[int, PartialAggregate] = {}
    for part in parts:
        existing = merged.get(part.bucket_start)
        merged[part.bucket_start] = part if existing is None else existing.merged(part)
    return [merged[start] for start in sorted(merged)]


def totals_of(parts: Iterable[PartialAggregate]) -> RangeTotals:
    """The totals over every snapshot the parts cover."""
    parts = list(parts)
    if not parts:
        return RangeTotals.empty()
    return RangeTotals(
        snapshot_count=sum(part.snapshot_count for part in parts),
        peak_viewers=max(part.peak_viewers for part in parts),
        weighted_viewer_sum=sum(part.weighted_viewer_sum for part in parts),
        sample_total=sum(part.sample_total for part in parts),
        first_minute=min(part.first_minute for part in parts),
        last_minute=max(part.last_minute for part in parts),
    )
