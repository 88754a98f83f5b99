"""Seeding an ingest service with minutes of one auction through its real ingest stream (90 days: 129,600)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2_grpc as ingest_grpc
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from service_common.viewer_snapshot import Snapshot

NINETY_DAYS = 90 * 1440
BATCH = 500
Metadata = tuple[tuple[str, str], ...]


def make_snapshot(auction_id: str, minute_start: int, **changes: object) -> Snapshot:
    """A valid snapshot: 12 samples between 3 and 9 viewers, averaging 6, ending at 5."""
    base = Snapshot(
        auction_id=auction_id,
        minute_start=minute_start,
        viewer_count=5,
        avg_viewers=6.0,
        peak_viewers=9,
        min_viewers=3,
        sample_count=12,
        unique_viewers=4,
        partial=False,
        gateway_id="gateway-test",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def minute_snapshots(
    auction_id: str, first_minute: int, count: int, gateway_id: str
) -> list[snapshot_pb2.ViewerSnapshot]:
    """``count`` valid snapshots of consecutive minutes from ``first_minute`` on, in a known pattern.

    Minute ``i`` of day ``k`` (``m = i % 60``, its minute in the hour): ``min_viewers`` ``k + m``,
    ``avg_viewers`` ``k + m + 1.5``, ``viewer_count`` ``k + m + 2``, ``peak_viewers`` ``k + m + 3``,
    12 samples on even minutes and 6 on odd ones: every hour of a day holds the same pattern, so
    what a query over whole hours or days answers can be worked out by hand.
    """
    snapshots = []
    for i in range(count):
        k, m = i // 1440, i % 60
        snapshots.append(
            snapshot_pb2.ViewerSnapshot(
                auction_id=auction_id,
                minute_start=Timestamp(seconds=first_minute + 60 * i),
                viewer_count=k + m + 2,
                avg_viewers=k + m + 1.5,
                peak_viewers=k + m + 3,
                min_viewers=k + m,
                sample_count=12 if m % 2 == 0 else 6,
                unique_viewers=k + m,
                gateway_id=gateway_id,
            )
        )
    return snapshots


@dataclass(frozen=True)
class Seeded:
    """What a seeding sent: each snapshot's outcome in order (``STORED``, ``DUPLICATE``…), and how long."""

    outcomes: list[str]
    batches: int
    seconds: float


async def seed(
    channel: grpc.aio.Channel, metadata: Metadata, snapshots: Sequence[snapshot_pb2.ViewerSnapshot]
) -> Seeded:
    """Turns on the analytics of the snapshots' auctions, then streams them in batches of 500 on one stream.

    Each batch waits for its acknowledgements before the next, as a gateway sends.
    """
    settings = settings_grpc.AuctionSettingsServiceStub(channel)
    for auction_id in dict.fromkeys(snapshot.auction_id for snapshot in snapshots):
        await settings.SetViewerAnalytics(
            settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=True), metadata=metadata
        )
    started = time.perf_counter()
    call = ingest_grpc.SnapshotIngestServiceStub(channel).StreamSnapshots(metadata=metadata)
    outcomes: list[str] = []
    batches = 0
    for at in range(0, len(snapshots), BATCH):
        await call.write(ingest_pb2.StreamSnapshotsRequest(snapshots=snapshots[at : at + BATCH]))
        response = await call.read()
        if response is grpc.aio.EOF:
            raise RuntimeError("the ingest stream ended before acknowledging a batch")
        outcomes += [
            ingest_pb2.SnapshotOutcome.Name(ack.outcome).removeprefix("SNAPSHOT_OUTCOME_")
            for ack in response.acks
        ]
        batches += 1
    await call.done_writing()
    if await call.read() is not grpc.aio.EOF:
        raise RuntimeError("the ingest stream answered after the last batch")
    return Seeded(outcomes, batches, time.perf_counter() - started)


async def seed_ninety_days(
    channel: grpc.aio.Channel, metadata: Metadata, auction_id: str, end_minute: int, gateway_id: str
) -> Seeded:
    """90 days of ``auction_id``'s minutes (:func:`minute_snapshots`) ending just before ``end_minute``."""
    return await seed(
        channel,
        metadata,
        minute_snapshots(auction_id, end_minute - NINETY_DAYS * 60, NINETY_DAYS, gateway_id),
    )
