"""``viewerAnalytics { summary { uniqueViewers } }``: snapshots with sketches sent over gRPC to a real
ingest service, read back through a real GraphQL API server, against exact counts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import datasketches
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2

from tests.conftest import RunningIngest
from tests.graphql_support import RunningGraphQL, graphql_config, running_graphql, seller_token
from tests.support import make_snapshot

HOUR = 3600
SUMMARY_QUERY = """
query Summary($id: ID!, $from: DateTime, $to: DateTime) {
  auction(id: $id) {
    viewerAnalytics(from: $from, to: $to) {
      summary {
        snapshotCount
        ...Unique
      }
    }
  }
}
fragment Unique on ViewerAnalyticsSummary {
  uniqueViewers
  uniqueViewerEstimate { estimate lowerBound upperBound sketchedSnapshots unsketchedSnapshots }
}
"""


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


def minute_viewers(index: int) -> tuple[set[str], set[str]]:
    """Minute ``index``'s identified and anonymous viewers: windows sliding by 40 a minute."""
    return (
        {f"sub-{n}" for n in range(index * 40, index * 40 + 300)},
        {f"anon-{n}" for n in range(index * 60, index * 60 + 500)},
    )


def sketch_of(ids: set[str]) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for each in ids:
        sketch.update(each)
    return bytes(sketch.serialize())


async def send_minutes(ingest: RunningIngest, auction_id: str, first: int, count: int) -> set[str]:
    """``count`` minutes from ``first``, every tenth without sketches; returns the sketched viewers."""
    client = ingest.client()
    await client.set_analytics(auction_id, True)
    seen: set[str] = set()
    snapshots = []
    for index in range(count):
        if index % 10 == 9:
            snapshots.append(make_snapshot(auction_id, first + 60 * index))
            continue
        identified, anonymous = minute_viewers(index)
        seen |= identified | anonymous
        snapshots.append(
            make_snapshot(
                auction_id,
                first + 60 * index,
                identified_sketch=sketch_of(identified),
                anonymous_sketch=sketch_of(anonymous),
            )
        )
    acks = await client.send(snapshots)
    assert all(ack.outcome == 1 for ack in acks), acks
    return seen


def iso(epoch: int) -> str:
    return Timestamp(seconds=epoch).ToJsonString()


async def test_unique_viewers_over_hours_and_partial_hours_within_two_percent(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    first = int(ingest.clock.now) // HOUR * HOUR - 3 * HOUR + 25 * 60  # 25 minutes into an hour
    seen = await send_minutes(ingest, "a-1", first, 150)  # to 55 minutes into the hour two later
    token = seller_token("a-1")

    answer = await api.execute(SUMMARY_QUERY, {"id": "a-1"}, token=token)
    assert answer.errors == []
    summary = answer.data["auction"]["viewerAnalytics"]["summary"]
    assert summary["snapshotCount"] == 150
    assert summary["uniqueViewers"] == pytest.approx(len(seen), rel=0.02)
    estimate = summary["uniqueViewerEstimate"]
    assert estimate["lowerBound"] <= len(seen) <= estimate["upperBound"]
    assert (estimate["sketchedSnapshots"], estimate["unsketchedSnapshots"]) == (135, 15)

    # A range cutting into the first and last hours: whole hours from the rollups, the ends from minutes.
    start, end = first + 20 * 60, first + 130 * 60
    in_range: set[str] = set()
    for index in range(20, 130):
        if index % 10 != 9:
            identified, anonymous = minute_viewers(index)
            in_range |= identified | anonymous
    answer = await api.execute(SUMMARY_QUERY, {"id": "a-1", "from": iso(start), "to": iso(end)}, token=token)
    assert answer.errors == []
    summary = answer.data["auction"]["viewerAnalytics"]["summary"]
    assert summary["uniqueViewers"] == pytest.approx(len(in_range), rel=0.02)
    assert summary["uniqueViewerEstimate"]["unsketchedSnapshots"] == 11


async def test_unique_viewers_are_null_where_no_minute_carries_a_sketch(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    client = ingest.client()
    await client.set_analytics("plain", True)
    m = int(ingest.clock.now) // 60 * 60 - 600
    await client.send([make_snapshot("plain", m + 60 * i) for i in range(5)])
    for auction_id in ("plain", "never-seen"):
        answer = await api.execute(SUMMARY_QUERY, {"id": auction_id}, token=seller_token(auction_id))
        assert answer.errors == []
        summary = answer.data["auction"]["viewerAnalytics"]["summary"]
        assert (summary["uniqueViewers"], summary["uniqueViewerEstimate"]) == (None, None)


async def test_the_ingest_service_merges_sketches_only_when_asked(ingest: RunningIngest) -> None:
    first = int(ingest.clock.now) // HOUR * HOUR - 2 * HOUR
    await send_minutes(ingest, "a-1", first, 30)
    client = ingest.client()
    request = analytics_pb2.QueryViewerAnalyticsRequest(auction_id="a-1", bucket_seconds=3600)
    plain = await client.analytics.QueryViewerAnalytics(request, metadata=client.metadata)
    assert not plain.summary.HasField("unique_viewers")
    request.include_unique_viewers = True
    asked = await client.analytics.QueryViewerAnalytics(request, metadata=client.metadata)
    assert asked.summary.unique_viewers.sketched_snapshots == 27
    assert asked.summary.unique_viewers.unsketched_snapshots == 3
