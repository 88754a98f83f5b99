"""The ingest service's domain types, free of gRPC and of any database."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# The snapshot record is shared with the socket gateway, which builds it.
from service_common.viewer_snapshot import Snapshot as Snapshot

# An ObjectId's canonical text: what the seed's backend sends as an auction id (``auction._id``).
_OBJECT_ID_HEX = re.compile(r"[0-9a-f]{24}")


def is_object_id_hex(auction_id: str) -> bool:
    """Whether ``auction_id`` is an ObjectId's canonical text: 24 lowercase hexadecimal digits."""
    return _OBJECT_ID_HEX.fullmatch(auction_id) is not None


class AuctionIdType(enum.Enum):
    """How MongoDB stores an auction id (``MONGODB_AUCTION_ID_TYPE``).

    ``AUTO`` stores an ObjectId's text as an ObjectId and any other id as a string; ``OBJECTID``
    accepts only ObjectId texts; ``STRING`` stores every id as a string, as versions before it did.
    Reads find both forms of an ObjectId text whatever the setting.
    """

    AUTO = "auto"
    OBJECTID = "objectid"
    STRING = "string"


class SnapshotOutcome(enum.Enum):
    """What became of one received snapshot (mirrors the wire enum of the same name)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    SKIPPED_ANALYTICS_DISABLED = "skipped_analytics_disabled"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class AuctionSettings:
    """An auction's analytics settings; ``updated_at`` (epoch seconds) is None if never configured."""

    auction_id: str
    enable_viewer_analytics: bool
    updated_at: float | None

    @classmethod
    def never_configured(cls, auction_id: str) -> AuctionSettings:
        """The seed's default for an auction nobody configured: analytics off."""
        return cls(auction_id=auction_id, enable_viewer_analytics=False, updated_at=None)


@dataclass(frozen=True, slots=True)
class AnalyticsPoint:
    """The snapshots whose ``minute_start`` falls in one bucket, combined."""

    bucket_start: int
    avg_viewers: float
    peak_viewers: int
    min_viewers: int
    viewer_count: int
    sample_count: int


@dataclass(frozen=True, slots=True)
class RangeTotals:
    """Totals over the raw snapshots of a range, as a store computes them."""

    snapshot_count: int
    peak_viewers: int
    weighted_viewer_sum: float
    sample_total: int
    first_minute: int | None
    last_minute: int | None

    @classmethod
    def empty(cls) -> RangeTotals:
        return cls(0, 0, 0.0, 0, None, None)


@dataclass(frozen=True, slots=True)
class AnalyticsSummary:
    """The summary of a range: overall peak, sample-weighted average and the span it covers."""

    overall_peak: int
    overall_avg: float
    duration_minutes: float
    first_at: int | None
    last_at: int | None
    snapshot_count: int

    @classmethod
    def from_totals(cls, totals: RangeTotals, snapshot_interval_seconds: int) -> AnalyticsSummary:
        """Summarizes ``totals``; the duration runs from the first interval's start to the last one's end."""
        if totals.first_minute is None or totals.last_minute is None or totals.sample_total == 0:
            return cls(0, 0.0, 0.0, None, None, 0)
        span_seconds = totals.last_minute - totals.first_minute + snapshot_interval_seconds
        return cls(
            overall_peak=totals.peak_viewers,
            overall_avg=totals.weighted_viewer_sum / totals.sample_total,
            duration_minutes=span_seconds / 60,
            first_at=totals.first_minute,
            last_at=totals.last_minute,
            snapshot_count=totals.snapshot_count,
        )


@dataclass(frozen=True, slots=True)
class AnalyticsRange:
    """Which snapshots a query covers: ``start`` inclusive, ``end`` exclusive, None for unbounded."""

    auction_id: str
    start: int | None
    end: int | None


class StorageUnavailable(Exception):
    """The store cannot be reached or written right now; the caller may retry later."""


class AuctionNotFound(Exception):
    """The flag lives on the backend's auction documents and none has this id; nothing was written."""
