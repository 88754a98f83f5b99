"""The dashboard's routes on the GraphQL API: the page, its config, its files, the redirect."""

from __future__ import annotations

from service_common.timing import SnapshotTiming
from tests.conftest import RunningIngest
from tests.graphql_support import graphql_config, running_graphql


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
        assert "connect-src 'self' https://live.example:8443 wss://live.example:8443" in policy

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
