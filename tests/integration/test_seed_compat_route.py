"""The seed's REST analytics route on the GraphQL API: its shape, its numbers against GraphQL's over
seeded data (a real ingest service on SQLite, a real API server), and its auth matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import RunningIngest
from tests.graphql_support import (
    ANALYTICS_QUERY,
    FRONTEND_ORIGIN,
    RunningGraphQL,
    admin_token,
    graphql_config,
    running_graphql,
    seller_token,
    token,
)
from tests.support import make_snapshot, outcome_names

AUCTION = "auction-seed"
OTHER = "auction-other"
SNAPSHOT_FIELDS = {
    "auction",
    "timestamp",
    "viewerCount",
    "avgViewers",
    "peakViewers",
    "minViewers",
    "sampleCount",
}
SUMMARY_QUERY = """
query Summary($id: ID!) {
  auction(id: $id) { viewerAnalytics(range: LAST_HOUR) { summary { overallPeak overallAvg snapshotCount } } }
}
"""
# The seed's timeRange values and GraphQL's RangePreset for each.
RANGES = {"1h": "LAST_HOUR", "24h": "LAST_24_HOURS", "7d": "LAST_7_DAYS", "all": "ALL"}


def path(auction_id: str = AUCTION, time_range: str | None = "all") -> str:
    query = "" if time_range is None else f"?timeRange={time_range}"
    return f"/api/v1/auctions/{auction_id}/analytics/viewers{query}"


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


async def seed_minutes(ingest: RunningIngest) -> None:
    """Minutes in the last hour, a few hours back, two days back and ten days back, varied so that
    each range has its own peak, mean and minimum; samples differ so the mean must be weighted."""
    client = ingest.client()
    await client.set_analytics(AUCTION, True)
    now = int(ingest.clock.now) // 60 * 60
    starts = [now - 60 * m for m in range(2, 40, 3)]  # the last hour
    starts += [now - 5 * 3600 - 60 * m for m in range(20)]  # hours back
    starts += [now - 2 * 86_400 - 60 * m for m in range(15)]  # days back
    starts += [now - 10 * 86_400 - 60 * m for m in range(10)]  # beyond 7 days
    snapshots = [
        make_snapshot(
            AUCTION,
            start,
            viewer_count=i % 7 + 3 + i % 5,
            avg_viewers=float(i % 7 + 3),
            peak_viewers=i % 7 + 3 + i % 5,
            min_viewers=i % 3 + 1,
            sample_count=12 if i % 2 else 6,
            unique_viewers=i % 3 + 1,
        )
        for i, start in enumerate(sorted(starts))
    ]
    acks = await client.send(snapshots)
    assert outcome_names(acks) == ["STORED"] * len(snapshots)


async def seed_get(api: RunningGraphQL, route: str, bearer: str | None) -> tuple[int, dict[str, Any]]:
    response = await api.get(route, token=bearer)
    return response.status, await response.json()


def iso_ms(value: str) -> str:
    """GraphQL's ``at`` as the seed's ``timestamp`` reads (Mongoose's JSON: milliseconds, ``Z``)."""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize("time_range", list(RANGES))
async def test_numbers_equal_the_graphql_querys_for_the_same_range(
    api: RunningGraphQL, ingest: RunningIngest, time_range: str
) -> None:
    await seed_minutes(ingest)
    status, body = await seed_get(api, path(time_range=time_range), admin_token())
    assert status == 200, body
    assert body["success"] is True
    assert body["message"] == "Viewer analytics retrieved successfully"
    data = body["data"]
    # The seed's resolution: one snapshot a minute, every field of its documents.
    assert data["bucketSeconds"] == 60
    graphql = await api.execute(
        ANALYTICS_QUERY, {"id": AUCTION, "range": RANGES[time_range], "bucket": "MINUTE"}, token=admin_token()
    )
    assert not graphql.errors, graphql.errors
    analytics = graphql.data["auction"]["viewerAnalytics"]
    points, summary = analytics["points"], analytics["summary"]
    assert len(points) > 0
    assert data["snapshots"] == [
        {
            "auction": AUCTION,
            "timestamp": iso_ms(point["at"]),
            "viewerCount": point["viewerCount"],
            "avgViewers": point["avgViewers"],
            "peakViewers": point["peakViewers"],
            "minViewers": point["minViewers"],
            "sampleCount": point["samples"],
        }
        for point in points
    ]
    assert all(set(snapshot) == SNAPSHOT_FIELDS for snapshot in data["snapshots"])
    assert data["summary"] == {
        "totalSnapshots": summary["snapshotCount"],
        "overallPeak": summary["overallPeak"],
        "overallAvg": summary["overallAvg"],
        "overallMin": min(point["minViewers"] for point in points),
        "duration": summary["durationMinutes"],
    }


async def test_ranges_differ_and_no_time_range_is_all(api: RunningGraphQL, ingest: RunningIngest) -> None:
    await seed_minutes(ingest)
    counts = {}
    for time_range in RANGES:
        _, body = await seed_get(api, path(time_range=time_range), admin_token())
        counts[time_range] = body["data"]["summary"]["totalSnapshots"]
    assert counts == {"1h": 13, "24h": 33, "7d": 48, "all": 58}
    # The seed's own values and no parameter at all.
    for seed_range, same_as in (("hour", "1h"), ("day", "24h"), (None, "all")):
        _, body = await seed_get(api, path(time_range=seed_range), admin_token())
        assert body["data"]["summary"]["totalSnapshots"] == counts[same_as]
    status, body = await seed_get(api, path(time_range="month"), admin_token())
    assert status == 400
    assert body["success"] is False
    assert "timeRange" in body["message"]


async def test_an_auction_without_data_answers_empty(api: RunningGraphQL) -> None:
    status, body = await seed_get(api, path("never-seen"), admin_token())
    assert status == 200
    assert body["data"]["snapshots"] == []
    assert body["data"]["summary"] == {
        "totalSnapshots": 0,
        "overallPeak": 0,
        "overallAvg": 0.0,
        "overallMin": 0,
        "duration": 0.0,
    }


async def test_auth_matrix(api: RunningGraphQL, ingest: RunningIngest) -> None:
    await seed_minutes(ingest)
    cases = {
        "no token": (None, 401),
        "bad token": ("not-a-jwt", 401),
        "wrongly signed": (token(secret="another-secret-0123456789abcdef-0123456789"), 401),
        "seller of another auction": (seller_token(OTHER), 403),
        "seller of this auction": (seller_token(AUCTION), 200),
        "admin": (admin_token(), 200),
    }
    for case, (bearer, expected) in cases.items():
        status, body = await seed_get(api, path(), bearer)
        assert status == expected, (case, body)
        if expected == 200:
            assert body["success"] is True, case
            assert body["data"]["summary"]["totalSnapshots"] == 58, case
        else:
            assert body["success"] is False, case
            assert body["message"], case
            assert "data" not in body, case
    response = await api.get(path())
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # The seed's frontend calls it from its own origin, with the token in a header: a preflight.
    async with api.session.options(
        f"{api.base_url}{path()}",
        headers={
            "Origin": FRONTEND_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    ) as preflight:
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN


async def test_ingest_down_is_unavailable(api: RunningGraphQL, ingest: RunningIngest) -> None:
    await ingest.server.stop(0)
    status, body = await seed_get(api, path(), admin_token())
    assert status == 503
    assert body["success"] is False


async def test_a_range_over_the_points_budget_comes_coarser_within_it(ingest: RunningIngest) -> None:
    """Over the request budget's points the series is the finest width that fits, the summary unchanged."""
    await seed_minutes(ingest)
    config = graphql_config(ingest.target, max_points_per_request=20)
    async with running_graphql(config, ingest.clock) as api:
        status, body = await seed_get(api, path(time_range="1h"), admin_token())
        assert status == 200, body
        data = body["data"]
        assert data["bucketSeconds"] > 60
        assert 0 < len(data["snapshots"]) <= 20
        graphql = await api.execute(SUMMARY_QUERY, {"id": AUCTION}, token=admin_token())
        assert not graphql.errors, graphql.errors
        summary = graphql.data["auction"]["viewerAnalytics"]["summary"]
        assert data["summary"]["overallPeak"] == summary["overallPeak"]
        assert data["summary"]["overallAvg"] == summary["overallAvg"]
        assert data["summary"]["totalSnapshots"] == summary["snapshotCount"] == 13


async def test_a_response_over_the_bytes_budget_is_refused(ingest: RunningIngest) -> None:
    """The response is held to the request budget's bytes, as a GraphQL response is."""
    await seed_minutes(ingest)
    config = graphql_config(ingest.target, max_response_bytes=4096)
    async with running_graphql(config, ingest.clock) as api:
        status, body = await seed_get(api, path(time_range="1h"), admin_token())
        assert status == 200, body
        status, body = await seed_get(api, path(time_range="all"), admin_token())
        assert status == 413
        assert body["success"] is False
        assert "4096 bytes" in body["message"]
