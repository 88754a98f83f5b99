"""The storage port: what the ingest service needs from a database, whichever it is."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from ingest_service.domain import (
    AnalyticsPoint,
    AnalyticsRange,
    AuctionSettings,
    RangeTotals,
    Snapshot,
    SnapshotOutcome,
)
from ingest_service.sketches import UniqueViewerCount

SNAPSHOT_COLLECTION = "vieweranalytics"
SETTINGS_COLLECTION = "auctionsettings"


class SnapshotStore(Protocol):
    """Stores snapshots unique on (auction_id, minute_start) and auction settings, and queries them.

    Every method raises :class:`ingest_service.domain.StorageUnavailable` when the database
    cannot be reached or written, and nothing else for database trouble.
    """

    async def insert_snapshots(self, snapshots: Sequence[Snapshot]) -> list[SnapshotOutcome]:
        """Stores each snapshot unless one with the same key exists.

        Returns:
            For each snapshot, in order, ``STORED`` or ``DUPLICATE``.
        """
        ...

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]:
        """The settings of those auctions that have been configured; others are absent."""
        ...

    async def set_viewer_analytics(self, auction_id: str, enabled: bool, now: float) -> AuctionSettings:
        """Turns an auction's analytics on or off at time ``now`` and returns its new settings."""
        ...

    async def query_points(self, query: AnalyticsRange, bucket_seconds: int) -> list[AnalyticsPoint]:
        """The range's snapshots grouped into epoch-aligned buckets, oldest first.

        ``bucket_seconds`` of 0 gives one point per snapshot.
        """
        ...

    async def query_totals(self, query: AnalyticsRange) -> RangeTotals:
        """Totals over the raw snapshots of the range."""
        ...

    async def query_unique_viewers(self, query: AnalyticsRange) -> UniqueViewerCount:
        """Distinct viewers of the range's snapshots, from their sketches merged.

        Bounded in memory and in sketches read: whole hours are read as one merged sketch each, only
        the partial hours at the range's ends minute by minute. Snapshots without a sketch are
        counted in ``unsketched_snapshots``.
        """
        ...

    async def ping(self) -> None:
        """Returns when the database answers; raises StorageUnavailable otherwise."""
        ...

    async def check_writable(self) -> None:
        """Returns when a small write is committed; raises StorageUnavailable otherwise."""
        ...

    async def close(self) -> None:
        """Releases connections and stops background work."""
        ...
