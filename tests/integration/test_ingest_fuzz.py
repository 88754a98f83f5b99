"""Property-based tests of the ingest gRPC surface: random snapshots, random bytes, random metadata.

Each test states its property; hypothesis generates at least 1,000 cases per surface. The server is
the real one on a loopback port, run on its own event loop in a thread so that hypothesis can drive
it with the synchronous gRPC client.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2_grpc as ingest_grpc
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from ingest_service.domain import AnalyticsRange
from ingest_service.server import create_ingest_server
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.internal_auth import internal_key_metadata
from tests.conftest import ingest_config
from tests.support import TEST_KEY

ENABLED = ("fz-0", "fz-1", "fz-2")
DISABLED = ("fz-off",)
UINT32 = 2**32 - 1
OUTCOMES = {
    ingest_pb2.SNAPSHOT_OUTCOME_STORED,
    ingest_pb2.SNAPSHOT_OUTCOME_DUPLICATE,
    ingest_pb2.SNAPSHOT_OUTCOME_SKIPPED_ANALYTICS_DISABLED,
    ingest_pb2.SNAPSHOT_OUTCOME_REJECTED,
}


@dataclass
class ThreadedIngest:
    channel: grpc.Channel
    store: SqliteSnapshotStore
    loop: asyncio.AbstractEventLoop

    def stored_count(self) -> int:
        async def count() -> int:
            totals = [
                await self.store.query_totals(AnalyticsRange(a, None, None)) for a in ENABLED + DISABLED
            ]
            return sum(t.snapshot_count for t in totals)

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=10)


@pytest.fixture(scope="module")
def threaded_ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedIngest]:
    path = str(Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.sqlite3")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ingest-under-fuzz", daemon=True)
    thread.start()

    async def start() -> tuple[SqliteSnapshotStore, object]:
        store = await SqliteSnapshotStore.open(path, retention_days=90)
        server = create_ingest_server(ingest_config(sqlite_path=path), store)
        await server.start()
        return store, server

    store, server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")  # type: ignore[attr-defined]
    settings_stub = settings_grpc.AuctionSettingsServiceStub(channel)
    for auction_id, enabled in [(a, True) for a in ENABLED] + [(a, False) for a in DISABLED]:
        settings_stub.SetViewerAnalytics(
            settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=enabled),
            metadata=internal_key_metadata(TEST_KEY),
        )
    try:
        yield ThreadedIngest(channel, store, loop)
    finally:
        channel.close()

        async def stop() -> None:
            await server.stop(0)  # type: ignore[attr-defined]
            await store.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def now_minute() -> int:
    return int(time.time()) // 60 * 60


counts = st.one_of(st.integers(0, 50), st.integers(0, UINT32))


@st.composite
def coherent_snapshots(draw: st.DrawFn) -> snapshot_pb2.ViewerSnapshot:
    """Snapshots a gateway would send: mostly valid, so that storing is exercised as much as refusing."""
    low = draw(st.integers(0, 1000))
    peak = draw(st.integers(low, low + 1000))
    viewer = draw(st.integers(low, peak))
    return snapshot_pb2.ViewerSnapshot(
        auction_id=draw(st.sampled_from(ENABLED + DISABLED)),
        minute_start=Timestamp(seconds=now_minute() - 60 * draw(st.integers(0, 500))),
        viewer_count=viewer,
        avg_viewers=draw(st.floats(low, peak)),
        peak_viewers=peak,
        min_viewers=low,
        sample_count=draw(st.integers(1, 12)),
        unique_viewers=draw(st.integers(0, viewer)),
        partial=draw(st.booleans()),
        gateway_id=draw(st.text(max_size=20)),
    )


@st.composite
def hostile_snapshots(draw: st.DrawFn) -> snapshot_pb2.ViewerSnapshot:
    """Any field any value the wire allows."""
    minute = now_minute() + 60 * draw(st.one_of(st.integers(-200, 5), st.integers(-200_000, 200_000)))
    return snapshot_pb2.ViewerSnapshot(
        auction_id=draw(st.one_of(st.sampled_from(ENABLED + DISABLED), st.text(max_size=140))),
        minute_start=Timestamp(
            seconds=max(0, minute + draw(st.one_of(st.just(0), st.integers(-59, 59)))),
            nanos=draw(st.one_of(st.just(0), st.integers(0, 999_999_999))),
        ),
        viewer_count=draw(counts),
        avg_viewers=draw(st.one_of(st.floats(0, 60), st.floats(allow_nan=True, allow_infinity=True))),
        peak_viewers=draw(counts),
        min_viewers=draw(counts),
        sample_count=draw(st.integers(0, 20)),
        unique_viewers=draw(counts),
        partial=draw(st.booleans()),
        gateway_id=draw(st.text(max_size=140)),
    )


snapshots = st.one_of(coherent_snapshots(), hostile_snapshots())


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def valid_by_the_rules(snapshot: snapshot_pb2.ViewerSnapshot, now: float) -> bool:
    """An oracle written independently of ingest_service.validation, from the documented rules."""
    auction = snapshot.auction_id
    start = snapshot.minute_start
    return (
        0 < len(auction) <= 128
        and auction[0].isascii()
        and auction[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.:-") for c in auction)
        and start.nanos == 0
        and start.seconds % 60 == 0
        and now - 90 * 86_400 <= start.seconds <= now + 120
        and 1 <= snapshot.sample_count <= 12
        and math.isfinite(snapshot.avg_viewers)
        and snapshot.min_viewers <= snapshot.avg_viewers <= snapshot.peak_viewers
        and snapshot.min_viewers <= snapshot.viewer_count <= snapshot.peak_viewers
        and snapshot.unique_viewers <= snapshot.viewer_count
        and max(snapshot.peak_viewers, snapshot.unique_viewers) <= 10_000_000
        and len(snapshot.gateway_id) <= 128
    )


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(snapshots, max_size=6))
def test_every_snapshot_is_stored_skipped_or_rejected_with_a_reason(
    threaded_ingest: ThreadedIngest, batch: list[snapshot_pb2.ViewerSnapshot]
) -> None:
    """Property: one ack per snapshot, in order; STORED or DUPLICATE only for valid snapshots of
    enabled auctions, SKIPPED only for valid snapshots of others, REJECTED always with a reason;
    the server answers every batch."""
    stub = ingest_grpc.SnapshotIngestServiceStub(threaded_ingest.channel)
    before = time.time()
    [response] = list(
        stub.StreamSnapshots(
            iter([ingest_pb2.StreamSnapshotsRequest(snapshots=batch)]),
            metadata=internal_key_metadata(TEST_KEY),
        )
    )
    after = time.time()
    assert len(response.acks) == len(batch)
    for snapshot, ack in zip(batch, response.acks, strict=True):
        assert ack.outcome in OUTCOMES
        assert (ack.auction_id, ack.minute_start) == (snapshot.auction_id, snapshot.minute_start)
        # The server read its clock between `before` and `after`: only decide where that cannot matter.
        valid_early, valid_late = valid_by_the_rules(snapshot, before), valid_by_the_rules(snapshot, after)
        if ack.outcome == ingest_pb2.SNAPSHOT_OUTCOME_REJECTED:
            assert ack.detail
            assert not (valid_early and valid_late)
            continue
        assert ack.detail == ""
        assert valid_early or valid_late
        event(ingest_pb2.SnapshotOutcome.Name(ack.outcome))
        if ack.outcome == ingest_pb2.SNAPSHOT_OUTCOME_SKIPPED_ANALYTICS_DISABLED:
            assert snapshot.auction_id not in ENABLED
        else:
            assert snapshot.auction_id in ENABLED


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=300))
def test_random_bytes_never_take_the_server_down(threaded_ingest: ThreadedIngest, payload: bytes) -> None:
    """Property: arbitrary bytes on the stream are either a readable batch (answered with acks) or
    refused with INVALID_ARGUMENT; never another status, never a dead server."""
    method = threaded_ingest.channel.stream_stream(
        "/viewer_analytics.v1.SnapshotIngestService/StreamSnapshots",
        request_serializer=None,
        response_deserializer=ingest_pb2.StreamSnapshotsResponse.FromString,
    )
    responses: list[ingest_pb2.StreamSnapshotsResponse] = []

    def send() -> None:
        responses.extend(method(iter([payload]), metadata=internal_key_metadata(TEST_KEY), timeout=10))

    status = status_of(send)
    assert status in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    if status == grpc.StatusCode.OK:
        [response] = responses
        assert all(ack.outcome in OUTCOMES for ack in response.acks)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    metadata=st.lists(
        st.tuples(
            st.one_of(st.just("x-internal-request"), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
        ),
        max_size=3,
    )
)
def test_wrong_metadata_is_refused_and_nothing_is_written(
    threaded_ingest: ThreadedIngest, metadata: list[tuple[str, str]]
) -> None:
    """Property: a call is accepted exactly when the first x-internal-request entry is a configured key;
    every other call gets UNAUTHENTICATED and changes no setting."""
    stub = settings_grpc.AuctionSettingsServiceStub(threaded_ingest.channel)
    presented = next((value for name, value in metadata if name == "x-internal-request"), None)
    request = settings_pb2.SetViewerAnalyticsRequest(auction_id="fz-off", enabled=False)
    status = status_of(lambda: stub.SetViewerAnalytics(request, metadata=metadata))
    expected = grpc.StatusCode.OK if presented == TEST_KEY else grpc.StatusCode.UNAUTHENTICATED
    assert status == expected
