"""The ingest service's ``/metrics``, ``/healthz`` and ``/readyz``: a real server on port 0, moved by real
gRPC calls, read by a real HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2
from viewer_analytics.v1 import auction_event_service_pb2_grpc as events_grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2

from ingest_service.config import MetricsListener
from service_common.internal_auth import internal_key_metadata
from service_common.prometheus import CONTENT_TYPE, parse_samples
from service_common.viewer_snapshot import to_wire
from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.support import FakeClock, IngestClient, make_snapshot, outcome_names

ENABLED, DISABLED = "metrics-enabled-auction", "metrics-disabled-auction"
SNAPSHOT_CALL = 'service="SnapshotIngestService",method="StreamSnapshots"'
QUERY_CALL = 'service="ViewerAnalyticsService",method="QueryViewerAnalytics"'


@pytest.fixture
async def running(tmp_path: Path, clock: FakeClock) -> AsyncIterator[RunningIngest]:
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), metrics=MetricsListener())
    async with serving_ingest(config, clock) as running:
        yield running


async def get(running: RunningIngest, path: str) -> tuple[int, str, str]:
    """Status, content type and body of ``GET path`` on the server's HTTP listener."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{running.server.metrics_port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


def event(event_id: str, auction_id: str, at: float) -> events_pb2.AuctionEvent:
    return events_pb2.AuctionEvent(
        event_id=event_id,
        auction_id=auction_id,
        occurred_at=Timestamp(seconds=int(at)),
        auction_started=events_pb2.AuctionStarted(),
    )


async def test_the_counters_move_with_real_grpc_traffic(running: RunningIngest) -> None:
    client = running.client()
    minute = int(running.clock.now) - 120
    await client.set_analytics(ENABLED, True)
    first = [
        make_snapshot(ENABLED, minute),
        make_snapshot(DISABLED, minute),
        make_snapshot(ENABLED, minute - 60, sample_count=0),
        make_snapshot(ENABLED, minute - 60, sample_count=13),
        make_snapshot(ENABLED, minute + 7),
    ]
    assert outcome_names(await client.send(first)) == [
        "STORED",
        "SKIPPED_ANALYTICS_DISABLED",
        "REJECTED",
        "REJECTED",
        "REJECTED",
    ]
    # A stream held open, as a gateway holds one: counted open until it ends.
    held = client.ingest.StreamSnapshots(metadata=client.metadata)
    await held.write(ingest_pb2.StreamSnapshotsRequest(snapshots=[to_wire(first[0])]))
    assert outcome_names((await held.read()).acks) == ["DUPLICATE"]
    assert parse_samples((await get(running, "/metrics"))[2])["ingest_snapshot_streams_open"] == 1
    await held.done_writing()
    assert await held.read() is grpc.aio.EOF
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await IngestClient(running.channel, None).send(first[:1])
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    query = analytics_pb2.QueryViewerAnalyticsRequest(auction_id=ENABLED)
    await client.analytics.QueryViewerAnalytics(query, metadata=client.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await client.analytics.QueryViewerAnalytics(
            query, metadata=internal_key_metadata("not-the-key-0123456789")
        )
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    events = events_grpc.AuctionEventServiceStub(running.channel)
    await events.RecordAuctionEvents(
        events_pb2.RecordAuctionEventsRequest(
            events=[event("e-1", ENABLED, minute), event("e-2", DISABLED, minute), event("", ENABLED, minute)]
        ),
        metadata=client.metadata,
    )
    # A streamed response (the server's reflection: an async generator), read to its end.
    reflection = reflection_pb2_grpc.ServerReflectionStub(running.channel).ServerReflectionInfo(
        metadata=client.metadata
    )
    await reflection.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    await reflection.read()
    await reflection.done_writing()
    assert await reflection.read() is grpc.aio.EOF

    status, content_type, text = await get(running, "/metrics")
    assert (status, content_type) == (200, CONTENT_TYPE)
    samples = parse_samples(text)
    expected = {
        'ingest_snapshots_total{outcome="stored"}': 1,
        'ingest_snapshots_total{outcome="duplicate"}': 1,
        'ingest_snapshots_total{outcome="skipped_analytics_disabled"}': 1,
        'ingest_snapshots_total{outcome="rejected"}': 3,
        'ingest_snapshots_rejected_total{reason="sample_count must be between 1 and 12"}': 2,
        'ingest_snapshots_rejected_total{reason="minute_start is not on a multiple of the 60-second '
        'snapshot interval"}': 1,
        "ingest_snapshot_batches_total": 2,
        "ingest_snapshot_batch_duration_seconds_count": 2,
        "ingest_snapshot_streams_total": 2,
        "ingest_snapshot_streams_open": 0,
        f'ingest_grpc_calls_total{{{SNAPSHOT_CALL},code="OK"}}': 2,
        f'ingest_grpc_calls_total{{{SNAPSHOT_CALL},code="UNAUTHENTICATED"}}': 1,
        f'ingest_grpc_calls_total{{{QUERY_CALL},code="OK"}}': 1,
        f'ingest_grpc_calls_total{{{QUERY_CALL},code="UNAUTHENTICATED"}}': 1,
        'ingest_grpc_calls_total{service="ServerReflection",method="ServerReflectionInfo",code="OK"}': 1,
        f'ingest_refused_calls_total{{{SNAPSHOT_CALL},reason="missing"}}': 1,
        f'ingest_refused_calls_total{{{QUERY_CALL},reason="not_accepted"}}': 1,
        # Timed: every call with a single response, refused ones too; streamed responses are not.
        f"ingest_grpc_call_duration_seconds_count{{{QUERY_CALL}}}": 2,
        'ingest_auction_events_total{outcome="stored"}': 1,
        'ingest_auction_events_total{outcome="skipped_analytics_disabled"}': 1,
        'ingest_auction_events_total{outcome="rejected"}': 1,
        "ingest_store_write_failures_total": 0,
        "ingest_serving": 1,
    }
    assert {name: samples.get(name) for name in expected} == expected
    assert not any(
        name.startswith("ingest_grpc_call_duration_seconds_count{" + SNAPSHOT_CALL) for name in samples
    )
    # Every batch looked its auctions' flags up in the store (no cache configured).
    assert samples['ingest_flag_lookups_total{result="miss"}'] >= 3
    assert 'ingest_flag_lookups_total{result="hit"}' not in samples
    # Bounded labels: no auction id, whatever the traffic.
    assert ENABLED not in text
    assert DISABLED not in text
    # Every sample belongs to a family announced with its HELP and TYPE lines.
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")} == families
    for name in samples:
        bare = name.partition("{")[0]
        assert bare in families or bare.rsplit("_", 1)[0] in families, name

    assert (await get(running, "/healthz"))[0] == 200
    status, _, body = await get(running, "/readyz")
    assert (status, body) == (200, '{"ready": true, "problems": []}')
