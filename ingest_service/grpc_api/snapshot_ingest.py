"""``SnapshotIngestService``: the long-lived stream on which gateways deliver snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2

from ingest_service.domain import StorageUnavailable
from ingest_service.grpc_api.aborts import abort
from ingest_service.grpc_api.conversions import OUTCOME_TO_WIRE, snapshot_from_wire
from ingest_service.ingestion import SnapshotIngestor
from ingest_service.metrics import IngestMetrics
from service_common.log_limits import RateLimitedLog


class SnapshotIngestServicer:
    """Answers each batch on a stream with one acknowledgement per snapshot, in order.

    When draining starts (shutdown), a batch already being processed is finished and acknowledged,
    then the stream ends with ``UNAVAILABLE`` so the gateway reconnects elsewhere or later. Lines a
    client can cause (streams opened and closed, malformed batches) go through ``log``, rate-limited.
    """

    def __init__(
        self,
        ingestor: SnapshotIngestor,
        log: RateLimitedLog,
        write_failed: Callable[[StorageUnavailable], None],
        metrics: IngestMetrics,
    ) -> None:
        self._ingestor = ingestor
        self._log = log
        self._write_failed = write_failed
        self._metrics = metrics
        self._draining = asyncio.Event()

    def start_draining(self) -> None:
        """Stops reading new batches; streams end once their current batch is acknowledged."""
        self._draining.set()

    async def StreamSnapshots(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        peer = context.peer()
        # Headers at once tell a client that the stream was accepted before it writes: grpc.aio
        # reports a write racing a refusal as INTERNAL, losing the refusal's code (grpc/grpc#36066).
        await context.send_initial_metadata(())
        self._log.info("stream_opened", "Snapshot stream opened", extra={"peer": peer})
        self._metrics.stream_opened()
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            while True:
                next_request = asyncio.ensure_future(context.read())
                await asyncio.wait((next_request, draining), return_when=asyncio.FIRST_COMPLETED)
                if not next_request.done():
                    next_request.cancel()
                    await abort(
                        context,
                        grpc.StatusCode.UNAVAILABLE,
                        "ingest service is shutting down; re-send unacknowledged snapshots later",
                    )
                try:
                    request = next_request.result()
                except DecodeError:
                    self._log.warning(
                        "malformed_batch", "Malformed snapshot batch; stream ended", extra={"peer": peer}
                    )
                    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed StreamSnapshotsRequest")
                if request is grpc.aio.EOF:
                    self._log.info(
                        "stream_closed", "Snapshot stream closed by the client", extra={"peer": peer}
                    )
                    return
                started = time.perf_counter()
                await context.write(await self._answer(request, context))
                self._metrics.snapshot_batch_duration.observe((), time.perf_counter() - started)
        finally:
            draining.cancel()
            self._metrics.stream_closed()

    async def _answer(
        self, request: ingest_pb2.StreamSnapshotsRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.StreamSnapshotsResponse:
        received = request.snapshots
        try:
            results = await self._ingestor.ingest([snapshot_from_wire(message) for message in received])
        except StorageUnavailable as error:
            self._write_failed(error)
            self._log.error(
                "storage_unavailable_batch",
                "Storage unavailable; batch not acknowledged",
                extra={"error": str(error)},
            )
            await abort(context, grpc.StatusCode.UNAVAILABLE, "storage unavailable; re-send the batch later")
        # Filled in place, and `detail` set only for rejections: this runs once per snapshot.
        response = ingest_pb2.StreamSnapshotsResponse(
            snapshot_interval_seconds=self._ingestor.snapshot_interval_seconds
        )
        add_ack = response.acks.add
        for message, result in zip(received, results, strict=True):
            outcome = OUTCOME_TO_WIRE[result.outcome]
            if result.detail:
                add_ack(
                    auction_id=message.auction_id,
                    minute_start=message.minute_start,
                    outcome=outcome,
                    detail=result.detail,
                )
            else:
                add_ack(auction_id=message.auction_id, minute_start=message.minute_start, outcome=outcome)
        return response
