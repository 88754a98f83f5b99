"""The SnapshotStore contract: every adapter (SQLite, MongoDB) must pass every test here."""

from __future__ import annotations

import pytest

from ingest_service.domain import AnalyticsPoint, AnalyticsRange, RangeTotals, Snapshot, SnapshotOutcome
from tests.contract.conftest import Backend
from tests.support import make_snapshot

STORED, DUPLICATE = SnapshotOutcome.STORED, SnapshotOutcome.DUPLICATE
DAY = 86_400


def minute(backend: Backend, minutes_ago: int) -> int:
    return int(backend.clock.now) - 60 * minutes_ago


async def test_insert_is_unique_on_auction_and_minute(backend: Backend) -> None:
    first = [make_snapshot("a-1", minute(backend, 3)), make_snapshot("a-1", minute(backend, 2))]
    assert await backend.store.insert_snapshots(first) == [STORED, STORED]

    again = [
        make_snapshot("a-1", minute(backend, 2), viewer_count=9, peak_viewers=20),  # same key, other values
        make_snapshot("a-1", minute(backend, 1)),
        make_snapshot("a-2", minute(backend, 2)),  # same minute, other auction
        make_snapshot("a-1", minute(backend, 1)),  # repeated inside the batch
    ]
    assert await backend.store.insert_snapshots(again) == [DUPLICATE, STORED, STORED, DUPLICATE]
    assert await backend.count("a-1") == 3
    assert await backend.count("a-2") == 1
    # The first write wins: a duplicate never overwrites what was stored.
    points = await backend.store.query_points(AnalyticsRange("a-1", None, None), 0)
    assert [point.peak_viewers for point in points] == [9, 9, 9]


async def test_empty_batch_stores_nothing(backend: Backend) -> None:
    assert await backend.store.insert_snapshots([]) == []


async def test_settings_round_trip(backend: Backend) -> None:
    assert await backend.store.get_settings(["never-configured"]) == {}
    assert await backend.store.get_settings([]) == {}

    enabled = await backend.store.set_viewer_analytics("a-1", True, now=1_700_000_000.5)
    assert enabled.enable_viewer_analytics
    assert enabled.updated_at == 1_700_000_000.5
    await backend.store.set_viewer_analytics("a-2", True, now=1_700_000_001.0)
    disabled = await backend.store.set_viewer_analytics("a-2", False, now=1_700_000_002.0)
    assert not disabled.enable_viewer_analytics

    found = await backend.store.get_settings(["a-1", "a-2", "a-3"])
    assert set(found) == {"a-1", "a-2"}
    assert found["a-1"].enable_viewer_analytics is True
    assert found["a-1"].updated_at == pytest.approx(1_700_000_000.5, abs=1e-3)
    assert found["a-2"].enable_viewer_analytics is False
    assert found["a-2"].updated_at == pytest.approx(1_700_000_002.0, abs=1e-3)


async def test_setting_the_flag_it_already_has_keeps_updated_at(backend: Backend) -> None:
    """``updated_at`` is when the flag last changed: setting the value it has is no change."""
    first = await backend.store.set_viewer_analytics("a-1", True, now=1_700_000_000.0)
    again = await backend.store.set_viewer_analytics("a-1", True, now=1_700_000_100.0)
    assert again.enable_viewer_analytics is True
    assert again.updated_at == pytest.approx(first.updated_at, abs=1e-3)
    stored = (await backend.store.get_settings(["a-1"]))["a-1"]
    assert stored.updated_at == pytest.approx(1_700_000_000.0, abs=1e-3)

    changed = await backend.store.set_viewer_analytics("a-1", False, now=1_700_000_200.0)
    assert changed.enable_viewer_analytics is False
    assert changed.updated_at == pytest.approx(1_700_000_200.0, abs=1e-3)
    off_again = await backend.store.set_viewer_analytics("a-1", False, now=1_700_000_300.0)
    assert off_again.updated_at == pytest.approx(1_700_000_200.0, abs=1e-3)
    stored = (await backend.store.get_settings(["a-1"]))["a-1"]
    assert stored.enable_viewer_analytics is False
    assert stored.updated_at == pytest.approx(1_700_000_200.0, abs=1e-3)


async def test_points_and_totals_match_hand_computed_values(backend: Backend) -> None:
    # Six minutes from an hour boundary, bucketed by 3 minutes: buckets [0,3) and [3,6).
    hour = int(backend.clock.now) // 3600 * 3600 - 3600
    rows = [
        # minute, viewer_count, avg, peak, min, samples
        (0, 4, 3.0, 5, 1, 12),
        (1, 6, 5.0, 8, 4, 6),
        (2, 2, 2.5, 6, 2, 12),
        (3, 10, 10.0, 10, 10, 12),
        (4, 7, 8.0, 12, 7, 3),
        (5, 1, 1.5, 3, 0, 12),
    ]
    snapshots = [
        make_snapshot(
            "math",
            hour + 60 * m,
            viewer_count=count,
            avg_viewers=avg,
            peak_viewers=peak,
            min_viewers=low,
            sample_count=samples,
            unique_viewers=0,
        )
        for m, count, avg, peak, low, samples in rows
    ]
    # Stored out of order: bucket order and "last viewer_count" must come from the timestamps.
    await backend.store.insert_snapshots(snapshots[::-1])
    everything = AnalyticsRange("math", None, None)

    points = await backend.store.query_points(everything, 180)
    # Bucket 1: weighted avg (3*12 + 5*6 + 2.5*12) / 30 = 96/30 = 3.2; bucket 2: (120 + 24 + 18) / 27 = 6.0
    assert points == [
        AnalyticsPoint(hour, pytest.approx(3.2), 8, 1, 2, 30),  # type: ignore[arg-type]
        AnalyticsPoint(hour + 180, pytest.approx(6.0), 12, 0, 1, 27),  # type: ignore[arg-type]
    ]

    raw = await backend.store.query_points(everything, 0)
    assert [(p.bucket_start, p.viewer_count, p.sample_count) for p in raw] == [
        (hour + 60 * m, count, samples) for m, count, _, _, _, samples in rows
    ]

    totals = await backend.store.query_totals(everything)
    assert totals.snapshot_count == 6
    assert totals.peak_viewers == 12
    assert totals.sample_total == 57
    assert totals.weighted_viewer_sum == pytest.approx(96 + 162)
    assert (totals.first_minute, totals.last_minute) == (hour, hour + 300)


async def test_range_is_start_inclusive_end_exclusive(backend: Backend) -> None:
    base = int(backend.clock.now) // 3600 * 3600 - 3600
    await backend.store.insert_snapshots(
        [make_snapshot("r", base + 60 * m, peak_viewers=m + 5) for m in range(10)]
    )

    window = AnalyticsRange("r", base + 120, base + 300)  # minutes 2, 3, 4
    points = await backend.store.query_points(window, 0)
    assert [p.bucket_start for p in points] == [base + 120, base + 180, base + 240]
    totals = await backend.store.query_totals(window)
    assert (totals.snapshot_count, totals.peak_viewers) == (3, 9)

    from_only = await backend.store.query_totals(AnalyticsRange("r", base + 540, None))
    until_only = await backend.store.query_totals(AnalyticsRange("r", None, base + 60))
    assert (from_only.snapshot_count, until_only.snapshot_count) == (1, 1)


async def test_queries_see_only_their_auction(backend: Backend) -> None:
    at = minute(backend, 5)
    await backend.store.insert_snapshots(
        [make_snapshot("mine", at), make_snapshot("other", at, peak_viewers=99)]
    )
    totals = await backend.store.query_totals(AnalyticsRange("mine", None, None))
    assert (totals.snapshot_count, totals.peak_viewers) == (1, 9)


async def test_empty_range_has_empty_totals_and_no_points(backend: Backend) -> None:
    nothing = AnalyticsRange("nobody", None, None)
    assert await backend.store.query_points(nothing, 60) == []
    assert await backend.store.query_totals(nothing) == RangeTotals.empty()


async def test_snapshots_older_than_retention_expire(backend: Backend) -> None:
    now = int(backend.clock.now) // 60 * 60
    expired = [make_snapshot("old", now - 91 * DAY + 60 * m) for m in range(3)]
    kept = [make_snapshot("recent", now - 89 * DAY), make_snapshot("recent", now - 60)]
    await backend.store.insert_snapshots(expired + kept)

    await backend.expire("old")

    assert await backend.count("old") == 0
    assert await backend.count("recent") == 2


async def test_ping_answers(backend: Backend) -> None:
    await backend.store.ping()


async def test_a_write_check_leaves_the_data_as_it_was(backend: Backend) -> None:
    await backend.store.insert_snapshots([make_snapshot("a-1", minute(backend, 1))])
    await backend.store.set_viewer_analytics("a-1", True, now=1_700_000_000.0)
    for _ in range(3):
        await backend.store.check_writable()
    assert await backend.count("a-1") == 1
    assert set(await backend.store.get_settings(["a-1"])) == {"a-1"}


def expected_points(
    snapshots: list[Snapshot], start: int | None, end: int | None, bucket: int
) -> list[AnalyticsPoint]:
    """The points computed the plain way, in Python, from the snapshots themselves."""
    chosen = sorted(
        (
            s
            for s in snapshots
            if (start is None or s.minute_start >= start) and (end is None or s.minute_start < end)
        ),
        key=lambda s: s.minute_start,
    )
    groups: dict[int, list[Snapshot]] = {}
    for s in chosen:
        groups.setdefault(s.minute_start // bucket * bucket if bucket else s.minute_start, []).append(s)
    return [
        AnalyticsPoint(
            bucket_start=key,
            avg_viewers=pytest.approx(
                sum(s.avg_viewers * s.sample_count for s in group) / sum(s.sample_count for s in group)
            ),  # type: ignore[arg-type]
            peak_viewers=max(s.peak_viewers for s in group),
            min_viewers=min(s.min_viewers for s in group),
            viewer_count=group[-1].viewer_count,
            sample_count=sum(s.sample_count for s in group),
        )
        for key, group in groups.items()
    ]


async def test_points_and_totals_agree_with_a_plain_computation_for_any_range_and_bucket(
    backend: Backend,
) -> None:
    # Three days with gaps, irregular values, out-of-order inserts in several batches.
    day_start = int(backend.clock.now) // DAY * DAY - 3 * DAY
    snapshots = [
        make_snapshot(
            "oracle",
            day_start + 60 * m,
            viewer_count=(m * 7) % 13 + 2,
            avg_viewers=float((m * 7) % 13 + 2),
            peak_viewers=(m * 7) % 13 + 2 + m % 5,
            min_viewers=(m * 7) % 13 // 2,
            sample_count=1 + m % 12,
            unique_viewers=1,
        )
        for m in range(0, 3 * 1440, 7)
        if not 1500 <= m < 1700
    ]
    for i in range(0, len(snapshots), 100):
        await backend.store.insert_snapshots(snapshots[i : i + 100][::-1])

    ranges = [
        (None, None),
        (day_start, day_start + DAY),  # aligned
        (day_start + 1234 * 60, day_start + 2345 * 60),  # unaligned at both ends
        (day_start + 125 * 60, day_start + 170 * 60),  # inside one hour... and across none
        (day_start + 50 * 60, day_start + 70 * 60),  # crosses one hour boundary, no whole hour
        (day_start + 3000 * 60, None),
        (None, day_start + 100 * 60),
    ]
    for start, end in ranges:
        query = AnalyticsRange("oracle", start, end)
        for bucket in (0, 300, 3600, 6 * 3600, DAY):
            assert await backend.store.query_points(query, bucket) == expected_points(
                snapshots, start, end, bucket
            ), (
                start,
                end,
                bucket,
            )
        raw = expected_points(snapshots, start, end, 0)
        totals = await backend.store.query_totals(query)
        assert totals.snapshot_count == len(raw)
        if raw:
            assert totals.peak_viewers == max(p.peak_viewers for p in raw)
            assert totals.sample_total == sum(p.sample_count for p in raw)
            assert (totals.first_minute, totals.last_minute) == (raw[0].bucket_start, raw[-1].bucket_start)
        else:
            assert totals == RangeTotals.empty()


async def test_duplicates_do_not_count_twice_in_any_aggregate(backend: Backend) -> None:
    hour = int(backend.clock.now) // 3600 * 3600 - 7200
    batch = [make_snapshot("twice", hour + 60 * m) for m in range(60)]
    await backend.store.insert_snapshots(batch)
    await backend.store.insert_snapshots(batch[::2])
    [point] = await backend.store.query_points(AnalyticsRange("twice", None, None), 3600)
    assert point.sample_count == 60 * 12
    assert (await backend.store.query_totals(AnalyticsRange("twice", None, None))).snapshot_count == 60
