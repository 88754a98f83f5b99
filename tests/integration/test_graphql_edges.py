"""The API's edges: empty and explicit ranges, refused input, document limits, the ingest service
down or slow, CORS, health, readiness, metrics, GraphiQL and the CSV export's rules."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from graphql import get_introspection_query

from graphql_api.auth import Role
from graphql_api.errors import ANALYTICS_UNAVAILABLE_MESSAGE
from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.graphql_support import (
    ANALYTICS_QUERY,
    FRONTEND_ORIGIN,
    SET_ANALYTICS,
    SETTINGS_QUERY,
    RunningGraphQL,
    admin_token,
    graphql_config,
    running_graphql,
    seller_token,
    token,
)
from tests.support import FakeClock, IngestClient, make_snapshot, outcome_names


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


async def seed_three_minutes(ingest: RunningIngest, auction_id: str) -> int:
    """Three minutes ending a minute before now: (avg, peak, min, count, samples) =
    (6, 9, 3, 5, 12), (10, 14, 8, 9, 6), (2, 4, 1, 4, 12). Returns the first minute."""
    client = ingest.client()
    await client.set_analytics(auction_id, True)
    first = int(ingest.clock.now) - 3 * 60
    acks = await client.send(
        [
            make_snapshot(auction_id, first),
            make_snapshot(
                auction_id,
                first + 60,
                avg_viewers=10.0,
                peak_viewers=14,
                min_viewers=8,
                viewer_count=9,
                sample_count=6,
                unique_viewers=9,
            ),
            make_snapshot(
                auction_id,
                first + 120,
                avg_viewers=2.0,
                peak_viewers=4,
                min_viewers=1,
                viewer_count=4,
                sample_count=12,
                unique_viewers=2,
            ),
        ]
    )
    assert outcome_names(acks) == ["STORED"] * 3
    return first


async def test_unknown_auction_has_empty_analytics_and_zero_summary(api: RunningGraphQL) -> None:
    for variables in ({}, {"range": "LAST_HOUR"}, {"bucket": "DAY"}):
        response = await api.execute(ANALYTICS_QUERY, {"id": "never-seen", **variables}, token=admin_token())
        assert response.errors == []
        result = response.data["auction"]["viewerAnalytics"]
        assert result["points"] == []
        assert result["summary"] == {
            "overallPeak": 0,
            "overallAvg": 0.0,
            "durationMinutes": 0.0,
            "firstAt": None,
            "lastAt": None,
            "snapshotCount": 0,
        }


async def test_small_series_summary_and_buckets(api: RunningGraphQL, ingest: RunningIngest) -> None:
    first = await seed_three_minutes(ingest, "auction-3")
    by_minute = await api.execute(
        ANALYTICS_QUERY, {"id": "auction-3", "range": "LAST_HOUR", "bucket": "MINUTE"}, token=admin_token()
    )
    result = by_minute.data["auction"]["viewerAnalytics"]
    assert [point["avgViewers"] for point in result["points"]] == [6.0, 10.0, 2.0]
    # Weighted by samples: (6*12 + 10*6 + 2*12) / 30 = 156 / 30 = 5.2 (the plain mean would be 6).
    assert result["summary"] == {
        "overallPeak": 14,
        "overallAvg": pytest.approx(5.2),
        "durationMinutes": 3.0,
        "firstAt": iso(first),
        "lastAt": iso(first + 120),
        "snapshotCount": 3,
    }
    by_day = await api.execute(
        ANALYTICS_QUERY, {"id": "auction-3", "range": "LAST_HOUR", "bucket": "DAY"}, token=admin_token()
    )
    day = by_day.data["auction"]["viewerAnalytics"]
    # The minutes fall into one or two UTC days depending on when the test runs.
    assert sum(point["samples"] for point in day["points"]) == 30
    assert max(point["peakViewers"] for point in day["points"]) == 14
    assert min(point["minViewers"] for point in day["points"]) == 1
    assert day["points"][-1]["viewerCount"] == 4
    assert day["summary"] == result["summary"]


async def test_explicit_from_and_to(api: RunningGraphQL, ingest: RunningIngest) -> None:
    first = await seed_three_minutes(ingest, "auction-3")
    # [first + 60, first + 120) holds the middle minute only: `to` is exclusive.
    response = await api.execute(
        ANALYTICS_QUERY,
        {"id": "auction-3", "from": iso(first + 60), "to": iso(first + 120), "bucket": "MINUTE"},
        token=admin_token(),
    )
    result = response.data["auction"]["viewerAnalytics"]
    assert result["points"] == [
        {
            "at": iso(first + 60),
            "avgViewers": 10.0,
            "peakViewers": 14,
            "minViewers": 8,
            "viewerCount": 9,
            "samples": 6,
        }
    ]
    assert result["summary"]["snapshotCount"] == 1
    # `from` alone runs to now.
    open_ended = await api.execute(
        ANALYTICS_QUERY, {"id": "auction-3", "from": iso(first + 60)}, token=admin_token()
    )
    assert open_ended.data["auction"]["viewerAnalytics"]["summary"]["snapshotCount"] == 2


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"range": "LAST_HOUR", "from": "2026-01-01T00:00:00Z"}, "not both"),
        ({"to": "2026-01-01T00:00:00Z"}, "'to' needs 'from'"),
        ({"from": "2026-01-01T00:00:00"}, "time zone"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "before"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "at most 92 days"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z", "bucket": "MINUTE"}, "points"),
    ],
    ids=["preset-and-from", "to-alone", "naive", "reversed", "too-long", "too-many-points"],
)
async def test_refused_ranges_are_bad_user_input(
    api: RunningGraphQL, variables: dict[str, str], message: str
) -> None:
    response = await api.execute(ANALYTICS_QUERY, {"id": "auction-1", **variables}, token=admin_token())
    assert response.data == {"auction": None}
    assert response.error_codes() == ["BAD_USER_INPUT"]
    assert message in response.errors[0]["message"]


async def test_depth_limit_refuses_before_anything_runs(ingest: RunningIngest) -> None:
    config = graphql_config(ingest.target, max_query_depth=2)
    async with running_graphql(config, ingest.clock) as api:
        # auction > viewerAnalytics > points > at: depth 3, as the limiter counts (leaves are 0).
        deep = await api.execute(ANALYTICS_QUERY, {"id": "auction-1"}, token=admin_token())
        assert deep.data is None
        assert "'Analytics' exceeds maximum operation depth of 2" in deep.errors[0]["message"]
        # A fragment does not hide depth.
        hidden = await api.execute(
            'query { auction(id: "a") { ...A } } fragment A on Auction { viewerAnalytics { points { at } } }',
            token=admin_token(),
        )
        assert hidden.data is None
        assert "exceeds maximum operation depth" in hidden.errors[0]["message"]
        shallow = await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=admin_token())
        assert shallow.errors == []
        # Refused documents never reached the ingest service; the shallow one did, once.
        metrics = await (await api.get("/metrics")).text()
        assert 'graphql_api_ingest_calls_total{method="QueryViewerAnalytics"' not in metrics
        assert 'graphql_api_ingest_calls_total{method="GetAuctionSettings",code="OK"} 1' in metrics


async def test_token_and_alias_limits(api: RunningGraphQL) -> None:
    many_tokens = 'query { auction(id: "a") { ' + "id " * 1200 + "} }"
    refused = await api.execute(many_tokens, token=admin_token())
    assert refused.data is None
    assert "more than 1000 tokens" in refused.errors[0]["message"]

    aliases = " ".join(f'a{n}: auction(id: "a{n}") {{ id }}' for n in range(16))
    too_many = await api.execute(f"query {{ {aliases} }}", token=admin_token())
    assert too_many.data is None
    assert "aliases" in too_many.errors[0]["message"]


async def test_ingest_down_is_a_clear_error_and_not_ready(api: RunningGraphQL, ingest: RunningIngest) -> None:
    ready = await api.get("/readyz")
    assert ready.status == 200
    await ingest.server.stop(0)

    read = await api.execute(ANALYTICS_QUERY, {"id": "auction-1"}, token=admin_token())
    assert read.errors[0]["message"] == ANALYTICS_UNAVAILABLE_MESSAGE
    assert read.error_codes() == ["ANALYTICS_UNAVAILABLE"]
    assert read.data == {"auction": None}
    assert "Traceback" not in str(read.body)
    assert "StatusCode" not in str(read.body)

    settings = await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=admin_token())
    assert settings.error_codes() == ["ANALYTICS_UNAVAILABLE"]
    write = await api.execute(SET_ANALYTICS, {"id": "auction-1", "enabled": True}, token=admin_token())
    assert write.error_codes() == ["ANALYTICS_UNAVAILABLE"]

    not_ready = await api.get("/readyz")
    assert not_ready.status == 503
    alive = await api.get("/healthz")
    assert alive.status == 200
    export = await api.get("/export/auctions/auction-1/viewer-analytics.csv", token=admin_token())
    assert export.status == 503
    assert await export.json() == {"error": ANALYTICS_UNAVAILABLE_MESSAGE}


async def test_slow_ingest_hits_the_deadline(ingest: RunningIngest) -> None:
    config = graphql_config(ingest.target, ingest_timeout_seconds=0.3)
    async with running_graphql(config, ingest.clock) as api:
        # Another connection holding the write lock makes the ingest service's write wait (its
        # busy timeout is 5 s): a real slow ingest service, longer than the API's 0.3 s deadline.
        blocker = sqlite3.connect(ingest.config.sqlite_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            slow = await api.execute(SET_ANALYTICS, {"id": "auction-1", "enabled": True}, token=admin_token())
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    assert slow.data is None
    assert slow.errors[0]["message"] == ANALYTICS_UNAVAILABLE_MESSAGE


async def test_cors_allows_the_frontend_origin_only(api: RunningGraphQL) -> None:
    preflight_headers = {
        "Origin": FRONTEND_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with api.session.options(f"{api.base_url}/graphql", headers=preflight_headers) as preflight:
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    stranger = {**preflight_headers, "Origin": "https://evil.example"}
    async with api.session.options(f"{api.base_url}/graphql", headers=stranger) as refused:
        assert refused.status == 403
        assert "Access-Control-Allow-Origin" not in refused.headers

    allowed = await api.session.post(
        f"{api.base_url}/graphql",
        json={"query": SETTINGS_QUERY, "variables": {"id": "a"}},
        headers={"Origin": FRONTEND_ORIGIN, "Authorization": f"Bearer {admin_token()}"},
    )
    async with allowed:
        assert allowed.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN
        assert "Origin" in allowed.headers.getall("Vary")
    other = await api.session.post(
        f"{api.base_url}/graphql",
        json={"query": SETTINGS_QUERY, "variables": {"id": "a"}},
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {admin_token()}"},
    )
    async with other:
        assert "Access-Control-Allow-Origin" not in other.headers


async def test_any_origin_when_allowed_origin_is_a_star(ingest: RunningIngest) -> None:
    async with running_graphql(graphql_config(ingest.target, allowed_origins=("*",)), ingest.clock) as api:
        headers = {"Origin": "https://demo.example", "Access-Control-Request-Method": "POST"}
        async with api.session.options(f"{api.base_url}/graphql", headers=headers) as preflight:
            assert preflight.status == 204
            # The origin is echoed rather than "*", so the answer stays right when cached per Origin.
            assert preflight.headers["Access-Control-Allow-Origin"] == "https://demo.example"


async def test_metrics_count_requests_and_ingest_calls(api: RunningGraphQL) -> None:
    for _ in range(3):
        await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=admin_token())
    await api.execute(SETTINGS_QUERY, {"id": "auction-1"})
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    lines = text.splitlines()
    assert 'graphql_api_http_requests_total{route="/graphql",method="POST",status="200"} 4' in lines
    assert 'graphql_api_ingest_calls_total{method="GetAuctionSettings",code="OK"} 3' in lines
    assert 'graphql_api_graphql_errors_total{code="UNAUTHENTICATED"} 1' in lines
    assert 'graphql_api_ingest_call_duration_seconds_count{method="GetAuctionSettings"} 3' in lines
    assert "# TYPE graphql_api_http_request_duration_seconds histogram" in lines


async def test_graphiql_only_in_development(ingest: RunningIngest) -> None:
    html = {"Accept": "text/html"}
    async with running_graphql(graphql_config(ingest.target, dev_mode=True), ingest.clock) as dev:
        page = await dev.get("/graphql", headers=html)
        assert page.status == 200
        assert "graphiql" in (await page.text()).lower()
        # GraphiQL loads the schema by introspection: deep, but not refused by the depth limit.
        schema = await dev.execute(get_introspection_query())
        assert schema.errors == []
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as production:
        page = await production.get("/graphql", headers=html)
        assert "graphiql" not in (await page.text()).lower()


async def test_csv_export_content_and_auth(api: RunningGraphQL, ingest: RunningIngest) -> None:
    first = await seed_three_minutes(ingest, "auction-3")
    path = "/export/auctions/auction-3/viewer-analytics.csv?range=LAST_HOUR&bucket=MINUTE"
    response = await api.get(path, token=seller_token("auction-3"))
    assert response.status == 200
    stamp = [datetime.fromtimestamp(first + 60 * n, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(3)]
    assert await response.text() == (
        "auction_id,at_utc,avg_viewers,peak_viewers,min_viewers,viewer_count,samples,unique_viewers\n"
        # No sketches in these minutes (the seed's kind): no unique viewers to say.
        f"auction-3,{stamp[0]},6.000,9,3,5,12,\n"
        f"auction-3,{stamp[1]},10.000,14,8,9,6,\n"
        f"auction-3,{stamp[2]},2.000,4,1,4,12,\n"
    )
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="viewer-analytics-auction-3-last_hour-{today}.csv"'
    )
    explicit = await api.get(
        "/export/auctions/auction-3/viewer-analytics.csv",
        params={"from": iso(first + 60), "to": iso(first + 120), "bucket": "minute"},
        token=admin_token(),
    )
    assert (await explicit.text()).splitlines()[1:] == [f"auction-3,{stamp[1]},10.000,14,8,9,6,"]
    span = "from-{}-to-{}".format(
        *(datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ") for t in (first + 60, first + 120))
    )
    assert explicit.headers["Content-Disposition"] == (
        f'attachment; filename="viewer-analytics-auction-3-{span}-{today}.csv"'
    )

    assert (await api.get(path)).status == 401
    assert (await api.get(path, token="garbage")).status == 401
    assert (await api.get(path, token=token(Role.ADMIN, lifetime_seconds=-120))).status == 401
    assert (await api.get(path, token=seller_token("auction-other"))).status == 403
    bad_bucket = await api.get(
        "/export/auctions/auction-3/viewer-analytics.csv?bucket=WEEK", token=admin_token()
    )
    assert bad_bucket.status == 400
    assert "AUTO" in (await bad_bucket.json())["error"]
    bad_id = await api.get("/export/auctions/bad%20id/viewer-analytics.csv", token=admin_token())
    assert bad_id.status == 400
    rows = list(csv.reader(io.StringIO(await (await api.get(path, token=admin_token())).text())))
    assert len(rows) == 4


async def test_all_with_auto_over_a_short_span_is_by_minute(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    first = await seed_three_minutes(ingest, "auction-3")
    response = await api.execute(ANALYTICS_QUERY, {"id": "auction-3"}, token=admin_token())
    result = response.data["auction"]["viewerAnalytics"]
    assert result["bucketSeconds"] == 60
    assert [point["at"] for point in result["points"]] == [iso(first), iso(first + 60), iso(first + 120)]
    assert result["summary"]["snapshotCount"] == 3


@pytest.fixture
async def long_retention_ingest(tmp_path: Path) -> AsyncIterator[tuple[str, IngestClient]]:
    """An ingest service keeping 900 days, so that more than 20,000 hours can be stored."""
    clock = FakeClock()
    config = ingest_config(sqlite_path=str(tmp_path / "long.sqlite3"), retention_days=900)
    async with serving_ingest(config, clock) as ingest:
        yield ingest.target, ingest.client()


async def test_all_with_auto_over_more_than_20000_hours(
    long_retention_ingest: tuple[str, IngestClient],
) -> None:
    target, client = long_retention_ingest
    await client.set_analytics("auction-long", True)
    # One minute in each of 20,001 consecutive hours (833 days): more hours than the ingest service
    # returns points, so any strategy built on hourly points would fail here.
    last_hour = int(time.time()) // 3600 * 3600 - 3600
    hours = [make_snapshot("auction-long", last_hour - 3600 * n) for n in range(20_001)]
    await client.send_batches(hours[at : at + 500] for at in range(0, len(hours), 500))
    async with running_graphql(graphql_config(target)) as api:
        response = await api.execute(ANALYTICS_QUERY, {"id": "auction-long"}, token=admin_token())
        calls = (await (await api.get("/metrics")).text()).splitlines()
    # The one-bucket overview, then the weekly series.
    assert 'graphql_api_ingest_calls_total{method="QueryViewerAnalytics",code="OK"} 2' in calls
    assert "INVALID_ARGUMENT" not in " ".join(calls)
    result = response.data["auction"]["viewerAnalytics"]
    # 20,001 hours are 833.4 days: whole days would be 834 or 835 points, weeks about 120.
    assert result["bucketSeconds"] == 7 * 86_400
    assert 119 <= len(result["points"]) <= 121
    assert sum(point["samples"] for point in result["points"]) == 12 * 20_001
    assert result["summary"]["snapshotCount"] == 20_001


async def test_wrong_internal_key_is_unavailable_for_callers_and_an_error_for_operators(
    ingest: RunningIngest, caplog: pytest.LogCaptureFixture
) -> None:
    config = graphql_config(ingest.target, internal_api_key="not-the-ingest-key-0123456789")
    async with running_graphql(config, ingest.clock) as api:
        response = await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=admin_token())
    assert response.errors[0]["message"] == ANALYTICS_UNAVAILABLE_MESSAGE
    assert "key" not in str(response.body)
    refusals = [record for record in caplog.records if "INTERNAL_API_KEY" in record.getMessage()]
    assert [record.levelname for record in refusals] == ["ERROR"]
