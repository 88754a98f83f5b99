"""Viewer analytics as the API offers them: ranges, bucket widths and results, free of GraphQL and gRPC."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from service_common.analytics_limits import MAX_POINTS

HOUR_SECONDS = 3600
DAY_SECONDS = 86_400
# AUTO picks the finest bucket that keeps a chart at or under this many points.
AUTO_TARGET_POINTS = 500
# AUTO's choices: widths a person reads easily, each epoch-aligned like every bucket.
AUTO_BUCKET_LADDER = (
    60,
    300,
    900,
    1800,
    HOUR_SECONDS,
    2 * HOUR_SECONDS,
    3 * HOUR_SECONDS,
    6 * HOUR_SECONDS,
    12 * HOUR_SECONDS,
    DAY_SECONDS,
    7 * DAY_SECONDS,
    30 * DAY_SECONDS,
)


class RangePreset(enum.Enum):
    """Ranges relative to now; ``ALL`` is every stored snapshot (the seed's ``timeRange=all``)."""

    LAST_HOUR = HOUR_SECONDS
    LAST_24_HOURS = DAY_SECONDS
    LAST_7_DAYS = 7 * DAY_SECONDS
    ALL = 0


class Bucket(enum.Enum):
    """Widths of a point's bucket; ``AUTO`` picks one that keeps the series at most ~500 points."""

    AUTO = 0
    MINUTE = 60
    FIVE_MINUTES = 300
    HOUR = HOUR_SECONDS
    DAY = DAY_SECONDS


class InvalidQuery(ValueError):
    """The caller asked for something the API does not answer; the message says what to change."""


@dataclass(frozen=True)
class TimeWindow:
    """Epoch seconds, ``start`` inclusive and ``end`` exclusive; both None for all stored data."""

    start: int | None
    end: int | None

    @property
    def is_all(self) -> bool:
        return self.start is None and self.end is None


def resolve_window(
    preset: RangePreset | None,
    start: datetime | None,
    end: datetime | None,
    *,
    now: float,
    max_range_seconds: int,
) -> TimeWindow:
    """The window a query covers: a preset, or an explicit ``start`` (and ``end``, default now).

    With neither, ``ALL``. Explicit ranges are bounded by ``max_range_seconds``.

    Raises:
        InvalidQuery: both a preset and explicit bounds, ``end`` without ``start``, a naive datetime,
            ``start`` not before ``end``, or a range longer than allowed.
    """
    if preset is not None and (start is not None or end is not None):
        raise InvalidQuery("give either 'range' or 'from'/'to', not both")
    if start is None:
        if end is not None:
            raise InvalidQuery("'to' needs 'from'")
        chosen = preset or RangePreset.ALL
        if chosen is RangePreset.ALL:
            return TimeWindow(None, None)
        end_seconds = int(now)
        return TimeWindow(end_seconds - chosen.value, end_seconds)
    start_seconds = _epoch_seconds(start, "from")
    end_seconds = int(now) if end is None else _epoch_seconds(end, "to")
    if start_seconds >= end_seconds:
        raise InvalidQuery("'from' must be before 'to'")
    if end_seconds - start_seconds > max_range_seconds:
        raise InvalidQuery(f"the range may span at most {max_range_seconds // DAY_SECONDS} days")
    return TimeWindow(start_seconds, end_seconds)


def _epoch_seconds(moment: datetime, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidQuery(f"'{name}' needs a time zone, e.g. 2026-01-31T12:00:00Z")
    # Snapshots start on whole seconds; a fraction would only shift a bound within one.
    return int(moment.timestamp() // 1)


def buckets_spanned(start: int, end: int, bucket_seconds: int) -> int:
    """How many epoch-aligned buckets ``[start, end)`` touches: the most points it can produce."""
    return (end - 1) // bucket_seconds - start // bucket_seconds + 1


def auto_ladder(snapshot_interval_seconds: int) -> tuple[int, ...]:
    """AUTO's widths for a deployment whose snapshots cover ``snapshot_interval_seconds`` each.

    The interval itself comes first, so that a shortened "minute" (a demo's 10 s) is charted at its
    own width rather than a minute's; then the ladder's wider widths that are whole multiples of it,
    the only widths the ingest service accepts. At the default 60 s this is the ladder itself.
    """
    wider = (
        w for w in AUTO_BUCKET_LADDER if w > snapshot_interval_seconds and w % snapshot_interval_seconds == 0
    )
    return (snapshot_interval_seconds, *wider)


def auto_bucket_seconds(
    start: int, end: int, ladder: Sequence[int] = AUTO_BUCKET_LADDER, target_points: int = AUTO_TARGET_POINTS
) -> int:
    """The finest ``ladder`` width at which ``[start, end)`` spans at most ``target_points`` buckets."""
    for width in ladder:
        if buckets_spanned(start, end, width) <= target_points:
            return width
    return ladder[-1]


def explicit_bucket_seconds(bucket: Bucket, window: TimeWindow) -> int:
    """The width for a bucket other than AUTO, checked against the point limit when the window is known.

    Raises:
        InvalidQuery: the window would hold more points than the ingest service returns.
    """
    known = window.start is not None and window.end is not None
    if known and buckets_spanned(window.start, window.end, bucket.value) > MAX_POINTS:  # type: ignore[arg-type]
        raise InvalidQuery(TOO_MANY_POINTS)
    return bucket.value


TOO_MANY_POINTS = (
    f"the range holds more than {MAX_POINTS} points at this bucket; choose a larger bucket or a shorter range"
)

# Every width this API asks the ingest service for: the schema's buckets and AUTO's ladder (the
# largest of which also serves as the one bucket that brings ALL's summary). Nothing else is sent.
BUCKET_WIDTHS = frozenset(AUTO_BUCKET_LADDER) | frozenset(b.value for b in Bucket if b is not Bucket.AUTO)


def checked_bucket_seconds(width: int, offered: frozenset[int] = BUCKET_WIDTHS) -> int:
    """``width`` if it is one this API offers, so that no other width can reach the ingest service.

    Args:
        width: the bucket width about to be sent.
        offered: the widths offered (``BUCKET_WIDTHS``, with the deployment's AUTO ladder).

    Raises:
        InvalidQuery: any other width.
    """
    if width not in offered:
        raise InvalidQuery(f"a bucket of {width} s is not offered; choose one of the Bucket values")
    return width


def points_bound(window: TimeWindow, bucket: Bucket, *, now: float, retention_days: int) -> int:
    """The most points one ``viewerAnalytics`` field can return for ``window`` at ``bucket``, known
    before asking the ingest service: what a per-request budget counts.

    An explicit window is counted exactly; one the resolver will refuse (more than ``MAX_POINTS``)
    counts 0, as it costs nothing. ``ALL``'s span is known only once asked for: at most the
    retention period up to now, and never more than the ingest service returns (``MAX_POINTS``);
    AUTO keeps any span at ``AUTO_TARGET_POINTS`` or under.
    """
    if window.start is not None and window.end is not None:
        width = bucket.value if bucket is not Bucket.AUTO else auto_bucket_seconds(window.start, window.end)
        spanned = buckets_spanned(window.start, window.end, width)
        return spanned if spanned <= MAX_POINTS else 0
    if bucket is Bucket.AUTO:
        return AUTO_TARGET_POINTS
    end = int(now) + 60
    return min(MAX_POINTS, buckets_spanned(end - retention_days * DAY_SECONDS, end, bucket.value))


@dataclass(frozen=True, slots=True)
class AuctionSettings:
    """An auction's analytics flag; ``updated_at`` is None for an auction never configured."""

    auction_id: str
    enable_viewer_analytics: bool
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class AnalyticsPoint:
    """One bucket: sample-weighted mean, peak, minimum, the last minute's count, and samples behind it.

    The start is kept in epoch seconds, as it comes off the wire; ``at`` makes the datetime that a
    response shows.
    """

    start: int
    avg_viewers: float
    peak_viewers: int
    min_viewers: int
    viewer_count: int
    samples: int
    # The bucket's distinct viewers (a sketch estimate), when asked for and a minute of it has a sketch.
    unique_viewers: float | None = None

    @property
    def at(self) -> datetime:
        """The bucket's start (UTC)."""
        return utc(self.start)


@dataclass(frozen=True, slots=True)
class UniqueViewers:
    """Distinct viewers from merged CPC sketches: the estimate, its 95% bounds, and what it rests on."""

    estimate: float
    lower_bound: float
    upper_bound: float
    identified_estimate: float
    anonymous_estimate: float
    exact: bool
    sketched_snapshots: int
    unsketched_snapshots: int


@dataclass(frozen=True, slots=True)
class AnalyticsSummary:
    """Over the raw minutes of the range, whatever the bucket; all zero when there is no data.

    ``unique_viewers`` only when asked for, and None when no snapshot of the range carries a sketch.
    """

    overall_peak: int
    overall_avg: float
    duration_minutes: float
    first_at: datetime | None
    last_at: datetime | None
    snapshot_count: int
    unique_viewers: UniqueViewers | None = None


@dataclass(frozen=True, slots=True)
class ViewerAnalytics:
    """An auction's points over a window, with the bucket width used and the summary."""

    # A sequence that may build each point when read (the ingest client's does: see ingest.py).
    points: Sequence[AnalyticsPoint]
    summary: AnalyticsSummary
    bucket_seconds: int


def utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
