"""Ranges and bucket widths as the GraphQL API resolves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from graphql_api.analytics import (
    AUTO_TARGET_POINTS,
    Bucket,
    InvalidQuery,
    RangePreset,
    TimeWindow,
    auto_bucket_seconds,
    buckets_spanned,
    explicit_bucket_seconds,
    resolve_window,
)

NOW = 1_800_000_000.0  # a whole minute (and hour): 2027-01-15T08:00:00Z
DAY = 86_400
MAX_RANGE = 92 * DAY


def window(
    preset: RangePreset | None = None, start: datetime | None = None, end: datetime | None = None
) -> TimeWindow:
    return resolve_window(preset, start, end, now=NOW, max_range_seconds=MAX_RANGE)


@pytest.mark.parametrize(
    ("preset", "seconds"),
    [(RangePreset.LAST_HOUR, 3600), (RangePreset.LAST_24_HOURS, DAY), (RangePreset.LAST_7_DAYS, 7 * DAY)],
)
def test_presets_count_back_from_now(preset: RangePreset, seconds: int) -> None:
    assert window(preset) == TimeWindow(int(NOW) - seconds, int(NOW))


def test_all_and_nothing_mean_all_stored_data() -> None:
    assert window(RangePreset.ALL) == TimeWindow(None, None)
    assert window() == TimeWindow(None, None)
    assert window().is_all


def test_explicit_bounds_in_any_time_zone() -> None:
    start = datetime(2027, 1, 10, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    end = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
    assert window(None, start, end) == TimeWindow(int(start.timestamp()), int(end.timestamp()))
    assert int(end.timestamp()) - int(start.timestamp()) == 7200
    assert window(None, start) == TimeWindow(int(start.timestamp()), int(NOW))


def test_maximum_range_is_inclusive() -> None:
    end = datetime.fromtimestamp(NOW, UTC)
    assert window(None, end - timedelta(seconds=MAX_RANGE), end).start == int(NOW) - MAX_RANGE
    with pytest.raises(InvalidQuery, match="at most 92 days"):
        window(None, end - timedelta(seconds=MAX_RANGE + 1), end)


@pytest.mark.parametrize(
    ("preset", "start", "end", "message"),
    [
        (RangePreset.ALL, datetime(2027, 1, 1, tzinfo=UTC), None, "not both"),
        (None, None, datetime(2027, 1, 1, tzinfo=UTC), "needs 'from'"),
        (None, datetime(2027, 1, 1), None, "time zone"),
        (None, datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "before"),
    ],
)
def test_refused_windows(
    preset: RangePreset | None, start: datetime | None, end: datetime | None, message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        window(preset, start, end)


def test_buckets_spanned_counts_epoch_aligned_buckets() -> None:
    assert buckets_spanned(0, 3600, 3600) == 1
    assert buckets_spanned(0, 3601, 3600) == 2
    assert buckets_spanned(1800, 5400, 3600) == 2
    assert buckets_spanned(60, 120, 60) == 1


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3600, 60),  # 60 minutes
        (DAY, 300),  # 288 five-minute buckets; 1440 minutes would be too many
        (7 * DAY, 1800),  # 336 half hours; 672 quarter hours too many
        (30 * DAY, 2 * 3600),  # 360 two-hour buckets; 720 hours too many
        (90 * DAY, 6 * 3600),  # 360 six-hour buckets; 720 three-hour ones too many
        (365 * DAY, DAY),  # 365 days; 730 half days too many
        (20 * 365 * DAY, 30 * DAY),  # the widest there is, even above 500 points
    ],
)
def test_auto_bucket_is_the_finest_within_the_target(seconds: int, expected: int) -> None:
    start = 1_799_971_200  # a UTC midnight
    assert auto_bucket_seconds(start, start + seconds) == expected
    if expected != 30 * DAY:
        assert buckets_spanned(start, start + seconds, expected) <= AUTO_TARGET_POINTS


def test_auto_bucket_counts_a_misaligned_start() -> None:
    # 500 minutes starting half a minute late touch 501 minute buckets: too many for MINUTE.
    assert auto_bucket_seconds(30, 30 + 500 * 60) == 300
    assert auto_bucket_seconds(0, 500 * 60) == 60


def test_explicit_bucket_refuses_more_points_than_the_ingest_service_returns() -> None:
    assert explicit_bucket_seconds(Bucket.HOUR, TimeWindow(0, 90 * DAY)) == 3600
    assert explicit_bucket_seconds(Bucket.MINUTE, TimeWindow(0, 20_000 * 60)) == 60
    with pytest.raises(InvalidQuery, match="more than 20000 points"):
        explicit_bucket_seconds(Bucket.MINUTE, TimeWindow(0, 20_001 * 60))
    # Over all data the span is unknown here; the ingest service has the last word.
    assert explicit_bucket_seconds(Bucket.MINUTE, TimeWindow(None, None)) == 60
