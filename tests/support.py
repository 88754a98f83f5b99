"""Helpers shared by the tests: a controllable clock, snapshot builders, gRPC client plumbing."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
from viewer_analytics.v1 import (
    auction_settings_service_pb2 as settings_pb2,
)
from viewer_analytics.v1 import (
    auction_settings_service_pb2_grpc as settings_grpc,
)
from viewer_analytics.v1 import (
    snapshot_ingest_service_pb2 as ingest_pb2,
)
from viewer_analytics.v1 import (
    snapshot_ingest_service_pb2_grpc as ingest_grpc,
)
from viewer_analytics.v1 import (
    viewer_analytics_service_pb2_grpc as analytics_grpc,
)
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from service_common.internal_auth import internal_key_metadata
from service_common.viewer_snapshot import Snapshot, to_wire
from testkit.seeding import make_snapshot as make_snapshot

TEST_KEY = "test-internal-key-0123456789"
ROTATED_KEY = "rotated-internal-key-abcdefgh"


class FakeClock:
    """A clock the test moves by hand, starting at the current whole minute (real MongoDB TTL
    monitors compare against the real time, so test data stays near it)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(start if start is not None else int(time.time()) // 60 * 60)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class IngestClient:
    """Stubs for the three services on one channel, all sending ``key``."""

    channel: grpc.aio.Channel
    key: str | None = TEST_KEY

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return internal_key_metadata(self.key) if self.key is not None else ()

    @property
    def settings(self) -> settings_grpc.AuctionSettingsServiceStub:
        return settings_grpc.AuctionSettingsServiceStub(self.channel)

    @property
    def analytics(self) -> analytics_grpc.ViewerAnalyticsServiceStub:
        return analytics_grpc.ViewerAnalyticsServiceStub(self.channel)

    @property
    def ingest(self) -> ingest_grpc.SnapshotIngestServiceStub:
        return ingest_grpc.SnapshotIngestServiceStub(self.channel)

    async def set_analytics(self, auction_id: str, enabled: bool) -> settings_pb2.AuctionSettings:
        response: settings_pb2.SetViewerAnalyticsResponse = await self.settings.SetViewerAnalytics(
            settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=enabled),
            metadata=self.metadata,
        )
        return response.settings

    async def send_batches(
        self, batches: Iterable[Sequence[Snapshot | snapshot_pb2.ViewerSnapshot]]
    ) -> list[list[ingest_pb2.SnapshotAck]]:
        """Sends each batch on one stream and waits for its acknowledgements before the next."""
        call = self.ingest.StreamSnapshots(metadata=self.metadata)
        # The ingest sends its headers on accepting a stream; a refused one has ended by then, and
        # reading it raises the refusal's own code. Writing at once could race the refusal, which
        # grpc.aio then reports as INTERNAL (grpc/grpc#36066).
        await call.initial_metadata()
        if call.done():
            await call.read()
        answers = []
        for batch in batches:
            messages = [
                item if isinstance(item, snapshot_pb2.ViewerSnapshot) else to_wire(item) for item in batch
            ]
            await call.write(ingest_pb2.StreamSnapshotsRequest(snapshots=messages))
            response = await call.read()
            assert response is not grpc.aio.EOF, "stream ended before acknowledging a batch"
            answers.append(list(response.acks))
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        return answers

    async def send(
        self, batch: Sequence[Snapshot | snapshot_pb2.ViewerSnapshot]
    ) -> list[ingest_pb2.SnapshotAck]:
        return (await self.send_batches([batch]))[0]


def outcome_names(acks: Iterable[ingest_pb2.SnapshotAck]) -> list[str]:
    return [ingest_pb2.SnapshotOutcome.Name(ack.outcome).removeprefix("SNAPSHOT_OUTCOME_") for ack in acks]
