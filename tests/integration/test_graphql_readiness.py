"""``/readyz`` of the GraphQL API checks what every query needs: an ingest service that serves and
accepts this API's internal key. Real ingest services (SQLite) on loopback ports, one of them
started with another key, and a real API in front of each."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.graphql_support import SETTINGS_QUERY, admin_token, graphql_config, running_graphql
from tests.support import TEST_KEY, FakeClock

OTHER_KEY = "another-internal-key-0123456789"


async def test_not_ready_while_the_ingest_service_refuses_our_key(tmp_path: Path) -> None:
    """Proves the regression: an ingest service that serves its health check but refuses the API's
    key made /readyz say ready while every query failed; now /readyz is 503 saying why, and an API
    holding the key the ingest service accepts is ready."""
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), internal_api_keys=(OTHER_KEY,))
    async with serving_ingest(config, FakeClock()) as ingest:
        async with running_graphql(graphql_config(ingest.target, internal_api_key=TEST_KEY)) as api:
            query = await api.execute(SETTINGS_QUERY, {"id": "a-1"}, token=admin_token())
            assert query.error_codes() == ["ANALYTICS_UNAVAILABLE"]
            ready = await api.get("/readyz")
            assert ready.status == 503
            assert await ready.json() == {
                "status": "not ready",
                "reason": "ingest service refuses this API's internal key (INTERNAL_API_KEY)",
            }
        async with running_graphql(graphql_config(ingest.target, internal_api_key=OTHER_KEY)) as api:
            ready = await api.get("/readyz")
            assert ready.status == 200
            assert await ready.json() == {"status": "ready"}
            query = await api.execute(SETTINGS_QUERY, {"id": "a-1"}, token=admin_token())
            assert query.errors == []


async def test_a_flood_of_readyz_costs_a_bounded_number_of_ingest_calls_and_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves /readyz, which needs no credentials, cannot be turned into ingest calls or log lines:
    200 probes at once share one check (answer reused for a second), and the refused key is
    logged once."""
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), internal_api_keys=(OTHER_KEY,))
    caplog.set_level(logging.INFO)
    async with (
        serving_ingest(config, FakeClock()) as ingest,
        running_graphql(graphql_config(ingest.target)) as api,
    ):
        answers = await asyncio.gather(*(api.get("/readyz") for _ in range(200)))
        metrics = await (await api.get("/metrics")).text()
    assert {answer.status for answer in answers} == {503}
    checks = 'graphql_api_ingest_calls_total{method="GetAuctionSettings",code="UNAUTHENTICATED"} '
    (calls,) = [float(line.removeprefix(checks)) for line in metrics.splitlines() if line.startswith(checks)]
    # One check, or two if the probes straddled the second an answer is kept.
    assert calls <= 2
    refusals = [record for record in caplog.records if "INTERNAL_API_KEY" in record.getMessage()]
    assert len(refusals) == 1


async def test_not_ready_as_soon_as_a_query_finds_the_ingest_service_down(ingest: RunningIngest) -> None:
    """Proves the kept answer does not hide an outage: a query that finds the ingest service
    unavailable makes the next /readyz check again."""
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as api:
        assert (await api.get("/readyz")).status == 200
        await ingest.server.stop(0)
        assert (await api.execute(SETTINGS_QUERY, {"id": "a-1"}, token=admin_token())).error_codes() == [
            "ANALYTICS_UNAVAILABLE"
        ]
        down = await api.get("/readyz")
        assert down.status == 503
        assert (await down.json())["reason"] == "ingest service unreachable"
