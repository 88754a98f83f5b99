"""The dashboard's routes on the GraphQL API: the page, its config, its files, the redirect; what the
page asks the API for (who is signed in, buckets at the configured interval)."""

from __future__ import annotations

from pathlib import Path

from service_common.timing import SnapshotTiming
from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.graphql_support import admin_token, graphql_config, running_graphql, seller_token
from tests.support import FakeClock


async def test_page_config_and_files_are_served_on_the_api_origin(ingest: RunningIngest) -> None:
    config = graphql_config(
        ingest.target,
        dashboard_gateway_url="https://live.example:8443",
        timing=SnapshotTiming(120, 10),
        retention_days=30,
    )
    async with running_graphql(config) as api:
        page = await api.get("/dashboard/")
        assert page.status == 200
        assert "<title>Viewer Analytics</title>" in await page.text()
        policy = page.headers["Content-Security-Policy"]
        # The live count comes through this origin's subscription: the page talks to nothing else.
        assert "connect-src 'self';" in policy
        assert "live.example" not in policy

        answer = await api.get("/dashboard/config.json")
        assert await answer.json() == {
            "gatewayUrl": "https://live.example:8443",
            "sampleIntervalSeconds": 10,
            "snapshotIntervalSeconds": 120,
            "retentionDays": 30,
        }

        files = (
            "dashboard.js",
            "dashboard.css",
            "vendor/socket.io.min.js",
            "vendor/LICENSE.socket.io-client",
        )
        for path in files:
            assert (await api.get(f"/dashboard/{path}")).status == 200, path
        assert (await api.get("/dashboard/../config.py")).status in (403, 404)

        for path in ("/", "/dashboard"):
            redirect = await api.get(path, allow_redirects=False)
            assert (redirect.status, redirect.headers["Location"]) == (302, "/dashboard/")


ME_QUERY = "{ me { subject role auctions coversAllAuctions } }"


async def test_me_names_the_caller_and_the_auctions_a_seller_token_covers(ingest: RunningIngest) -> None:
    async with running_graphql(graphql_config(ingest.target)) as api:
        seller = await api.execute(ME_QUERY, token=seller_token("lot-b", "lot-a"))
        assert seller.data == {
            "me": {
                "subject": "seller-1",
                "role": "SELLER",
                "auctions": ["lot-a", "lot-b"],
                "coversAllAuctions": False,
            }
        }
        admin = await api.execute(ME_QUERY, token=admin_token())
        assert admin.data["me"]["role"] == "ADMIN"
        assert admin.data["me"]["coversAllAuctions"] is True
        anonymous = await api.execute(ME_QUERY)
        assert anonymous.error_codes() == ["UNAUTHENTICATED"]


async def test_auto_buckets_follow_a_shortened_snapshot_interval(tmp_path: Path, clock: FakeClock) -> None:
    timing = SnapshotTiming(10, 5)
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), timing=timing)
    async with (
        serving_ingest(config, clock) as ten_seconds,
        running_graphql(graphql_config(ten_seconds.target, timing=timing)) as api,
    ):
        answer = await api.execute(
            '{ auction(id: "demo") { viewerAnalytics(range: LAST_HOUR) { bucketSeconds } } }',
            token=admin_token(),
        )
        # A minute before: the chart of a 10 s demo showed one point per six snapshots.
        assert answer.data == {"auction": {"viewerAnalytics": {"bucketSeconds": 10}}}
