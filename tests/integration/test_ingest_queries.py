"""Settings and analytics queries through the real gRPC API, against hand-computed values."""

from __future__ import annotations

import sqlite3
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2

from graphql_api.analytics import BUCKET_WIDTHS
from tests.conftest import RunningIngest
from tests.support import IngestClient, make_snapshot, outcome_names


async def query(
    client: IngestClient,
    auction_id: str,
    bucket_seconds: int = 0,
    start: int | None = None,
    end: int | None = None,
) -> analytics_pb2.QueryViewerAnalyticsResponse:
    # Any: the request's other keywords (bucket_seconds, include_unique_viewers) have other types.
    bounds: dict[str, Any] = {}
    if start is not None:
        bounds["from"] = Timestamp(seconds=start)
    if end is not None:
        bounds["to"] = Timestamp(seconds=end)
    request = analytics_pb2.QueryViewerAnalyticsRequest(
        auction_id=auction_id, bucket_seconds=bucket_seconds, **bounds
    )
    response: analytics_pb2.QueryViewerAnalyticsResponse = await client.analytics.QueryViewerAnalytics(
        request, metadata=client.metadata
    )
    return response


async def test_settings_of_a_never_configured_auction_are_off_without_a_date(ingest: RunningIngest) -> None:
    client = ingest.client()
    response = await client.settings.GetAuctionSettings(
        settings_pb2.GetAuctionSettingsRequest(auction_id="fresh"), metadata=client.metadata
    )
    assert response.settings.auction_id == "fresh"
    assert not response.settings.enable_viewer_analytics
    assert not response.settings.HasField("updated_at")


async def test_settings_round_trip(ingest: RunningIngest) -> None:
    client = ingest.client()
    ingest.clock.advance(0.25)
    changed = await client.set_analytics("round-trip", True)
    assert changed.enable_viewer_analytics
    assert (changed.updated_at.seconds, changed.updated_at.nanos) == (int(ingest.clock.now), 250_000_000)
    response = await client.settings.GetAuctionSettings(
        settings_pb2.GetAuctionSettingsRequest(auction_id="round-trip"), metadata=client.metadata
    )
    assert response.settings == changed


@pytest.mark.parametrize("auction_id", ["", "bad id", "x" * 200])
async def test_bad_auction_ids_are_invalid_arguments(ingest: RunningIngest, auction_id: str) -> None:
    client = ingest.client()
    for call in (
        client.settings.GetAuctionSettings(
            settings_pb2.GetAuctionSettingsRequest(auction_id=auction_id), metadata=client.metadata
        ),
        client.settings.SetViewerAnalytics(
            settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=True),
            metadata=client.metadata,
        ),
        query(client, auction_id),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def seed_two_hours(ingest: RunningIngest) -> int:
    """120 minutes from a whole hour: minute m has peak m+10, min m, average m+5 over 12 samples,
    ending at m+5 viewers — except minute 30, cut short by a shutdown after 6 samples."""
    client = ingest.client()
    await client.set_analytics("seeded", True)
    start = int(ingest.clock.now) // 3600 * 3600 - 3 * 3600
    snapshots = [
        make_snapshot(
            "seeded",
            start + 60 * m,
            viewer_count=m + 5,
            avg_viewers=m + 5.0,
            peak_viewers=m + 10,
            min_viewers=m,
            sample_count=6 if m == 30 else 12,
            partial=m == 30,
            unique_viewers=m,
        )
        for m in range(120)
    ]
    acks = await client.send_batches([snapshots[:70], snapshots[70:]])
    assert outcome_names(acks[0] + acks[1]) == ["STORED"] * 120
    return start


async def test_summary_over_everything(ingest: RunningIngest) -> None:
    start = await seed_two_hours(ingest)
    response = await query(ingest.client(), "seeded")
    summary = response.summary
    assert summary.snapshot_count == 120
    assert summary.overall_peak == 129
    # sum((m + 5) * w) / sum(w) with w = 12 except w = 6 at m = 30:
    # (12 * sum(m + 5 for m < 120) - 6 * 35) / (12 * 120 - 6) = (12 * 7740 - 210) / 1434
    assert summary.overall_avg == pytest.approx((12 * 7740 - 210) / 1434)
    assert summary.duration_minutes == 120.0
    assert (summary.first_at.seconds, summary.last_at.seconds) == (start, start + 119 * 60)
    assert len(response.points) == 120  # bucket 0: one point per stored minute


async def test_hourly_buckets(ingest: RunningIngest) -> None:
    start = await seed_two_hours(ingest)
    points = (await query(ingest.client(), "seeded", bucket_seconds=3600)).points
    assert [p.bucket_start.seconds for p in points] == [start, start + 3600]
    first, second = points
    # First hour: minutes 0..59, weights 12 except 6 at minute 30.
    assert first.avg_viewers == pytest.approx((12 * sum(m + 5 for m in range(60)) - 6 * 35) / (12 * 60 - 6))
    assert (first.peak_viewers, first.min_viewers, first.viewer_count) == (69, 0, 64)
    assert first.sample_count == 714
    assert second.avg_viewers == pytest.approx(sum(m + 5 for m in range(60, 120)) / 60)
    assert (second.peak_viewers, second.min_viewers, second.viewer_count, second.sample_count) == (
        129,
        60,
        124,
        720,
    )


async def test_a_range_narrows_points_and_summary_alike(ingest: RunningIngest) -> None:
    start = await seed_two_hours(ingest)
    # Minutes 50..69 by 10-minute buckets, with the summary over the same raw minutes.
    response = await query(ingest.client(), "seeded", 600, start + 50 * 60, start + 70 * 60)
    assert [p.bucket_start.seconds for p in response.points] == [start + 3000, start + 3600]
    assert [p.peak_viewers for p in response.points] == [69, 79]
    assert response.summary.snapshot_count == 20
    assert response.summary.overall_peak == 79
    assert response.summary.overall_avg == pytest.approx(sum(m + 5 for m in range(50, 70)) / 20)
    assert response.summary.duration_minutes == 20.0


async def test_unknown_auction_has_no_points_and_a_zero_summary(ingest: RunningIngest) -> None:
    response = await query(ingest.client(), "nobody-watched", 3600)
    assert list(response.points) == []
    assert response.summary == analytics_pb2.ViewerAnalyticsSummary()


async def test_a_reversed_range_is_an_invalid_argument(ingest: RunningIngest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await query(ingest.client(), "seeded", 60, start=2_000_000_000, end=1_000_000_000)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_too_many_points_is_an_invalid_argument(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("dense", True)
    now = int(ingest.clock.now)
    batch = [make_snapshot("dense", now - 60 * m) for m in range(20_001)]
    await client.send_batches([batch[i : i + 5000] for i in range(0, len(batch), 5000)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await query(client, "dense", 0)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "choose a larger bucket_seconds" in (refused.value.details() or "")
    hourly = (await query(client, "dense", 3600)).points
    assert sum(point.sample_count for point in hourly) == 12 * 20_001


async def test_storage_unavailable_is_reported_and_nothing_acknowledged(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("locked", True)
    snapshot = make_snapshot("locked", int(ingest.clock.now) - 60)
    holder = sqlite3.connect(ingest.config.sqlite_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.send([snapshot])
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "SQLite" not in (refused.value.details() or ""), "storage internals must not reach the caller"
        # WAL mode: a held write lock does not block readers, so the dashboard keeps working.
        assert (await query(client, "locked")).summary.snapshot_count == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # The sender re-sends what was not acknowledged; it is stored exactly once.
    assert outcome_names(await client.send([snapshot])) == ["STORED"]
    assert await ingest.stored_count("locked") == 1


@pytest.mark.parametrize("bucket_seconds", [7, 90, 59, 30 * 86_400 + 60, 2**32 - 1])
async def test_a_bucket_that_is_not_whole_snapshot_intervals_up_to_30_days_is_refused(
    ingest: RunningIngest, bucket_seconds: int
) -> None:
    client = ingest.client()
    await client.set_analytics("buckets", True)
    await client.send([make_snapshot("buckets", int(ingest.clock.now) - 60)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await query(client, "buckets", bucket_seconds)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert f"got {bucket_seconds}" in details
    assert "multiple of 60 (the snapshot interval) up to 2592000 (30 days)" in details


async def test_every_width_the_graphql_api_sends_is_answered(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("widths", True)
    minute = int(ingest.clock.now) // 60 * 60 - 60
    await client.send([make_snapshot("widths", minute)])
    for width in sorted({0, *BUCKET_WIDTHS}):
        (point,) = (await query(client, "widths", width)).points
        # Epoch-aligned and holding the snapshot: never a point stamped far from the data.
        assert minute - max(width, 60) < point.bucket_start.seconds <= minute, width
