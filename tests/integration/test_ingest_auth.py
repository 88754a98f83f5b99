"""The internal key guards every service of the ingest server; health stays open to probes."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2

from tests.conftest import RunningIngest
from tests.support import ROTATED_KEY, TEST_KEY, make_snapshot, outcome_names

REFUSED_KEYS = [None, "", "wrong-key-but-long-enough", TEST_KEY + "x", TEST_KEY[:-1]]


@pytest.mark.parametrize("key", REFUSED_KEYS, ids=["missing", "empty", "wrong", "longer", "shorter"])
async def test_refused_key_reads_and_writes_nothing(ingest: RunningIngest, key: str | None) -> None:
    client = ingest.client(key)
    with pytest.raises(grpc.aio.AioRpcError) as refused_set:
        await client.set_analytics("auction-1", True)
    assert refused_set.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(grpc.aio.AioRpcError) as refused_get:
        await client.settings.GetAuctionSettings(
            settings_pb2.GetAuctionSettingsRequest(auction_id="auction-1"), metadata=client.metadata
        )
    assert refused_get.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(grpc.aio.AioRpcError) as refused_query:
        await client.analytics.QueryViewerAnalytics(
            analytics_pb2.QueryViewerAnalyticsRequest(auction_id="auction-1"), metadata=client.metadata
        )
    assert refused_query.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Enable with a good key so that a refused stream would otherwise have stored the snapshot.
    await ingest.client().set_analytics("auction-1", True)
    with pytest.raises(grpc.aio.AioRpcError) as refused_stream:
        await client.send([make_snapshot("auction-1", int(ingest.clock.now) - 60)])
    assert refused_stream.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await ingest.stored_count("auction-1") == 0


@pytest.mark.parametrize("key", [TEST_KEY, ROTATED_KEY], ids=["current", "rotated"])
async def test_each_configured_key_is_accepted(ingest: RunningIngest, key: str) -> None:
    client = ingest.client(key)
    settings = await client.set_analytics("auction-1", True)
    assert settings.enable_viewer_analytics
    acks = await client.send([make_snapshot("auction-1", int(ingest.clock.now) - 60)])
    assert outcome_names(acks) == ["STORED"]


async def test_refusal_is_logged_without_the_key(
    ingest: RunningIngest, caplog: pytest.LogCaptureFixture
) -> None:
    presented = "secret-looking-wrong-key-123456"
    with pytest.raises(grpc.aio.AioRpcError):
        await ingest.client(presented).set_analytics("auction-1", True)
    refusals = [record for record in caplog.records if record.getMessage() == "Refused internal call"]
    assert refusals, "a refusal must be logged"
    logged = " ".join(str(value) for record in refusals for value in record.__dict__.values())
    assert presented not in logged
    assert "SetViewerAnalytics" in logged


async def test_health_answers_without_a_key(ingest: RunningIngest) -> None:
    health = health_pb2_grpc.HealthStub(ingest.channel)
    for service in ("", "viewer_analytics.v1.SnapshotIngestService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
