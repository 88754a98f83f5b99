"""Delivers the outbox over one long-lived ``StreamSnapshots`` stream, removing snapshots only on ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2_grpc as ingest_grpc

from service_common.internal_auth import internal_key_metadata
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.snapshots.outbox import Outbox, OutboxEntry

logger = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Exponential backoff with jitter: the n-th consecutive failure waits up to ``initial·2ⁿ``.

    The wait is drawn from the upper half of that window ("equal jitter"): many gateways cut
    off by the same ingest restart spread their reconnects out, yet none retries at once.
    """

    initial_seconds: float = 0.5
    maximum_seconds: float = 30.0
    rng: Callable[[float, float], float] = random.uniform
    failures: int = 0

    def next_delay(self) -> float:
        # The exponent stops growing long before the window would overflow a float (an ingest
        # service down for hours means thousands of failures).
        window = min(self.maximum_seconds, self.initial_seconds * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return self.rng(window / 2, window)

    def reset(self) -> None:
        self.failures = 0


class StreamBroken(Exception):
    """The stream ended or answered out of contract; the unacknowledged batch is re-sent."""


_OUTCOME_NAMES = {
    value: name.removeprefix("SNAPSHOT_OUTCOME_").lower()
    for name, value in ingest_pb2.SnapshotOutcome.items()
}
# Each ends the stream and is retried after a backoff: the unacknowledged batch stays in the outbox. An
# outbox that cannot be read or cleaned (sqlite3.Error) is retried the same way: a batch acknowledged
# but not removed is sent again, which the ingest service's idempotency makes harmless.
_RETRIED_ERRORS = (
    grpc.aio.AioRpcError,
    grpc.aio.UsageError,
    asyncio.InvalidStateError,
    StreamBroken,
    sqlite3.Error,
)


class SnapshotSender:
    """One sender per gateway: one stream, one batch in flight, acknowledged before the next.

    A snapshot leaves the outbox only when its acknowledgement arrives, whatever the outcome
    (stored, duplicate, skipped or rejected: re-sending would not change it). When the stream
    fails, the sender reconnects with backoff and re-sends what was not acknowledged; the
    ingest service's idempotency on (auction, minute) makes the re-send harmless.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        outbox: Outbox,
        internal_api_key: str,
        metrics: GatewayMetrics,
        *,
        batch_size: int = 500,
        backoff: Backoff | None = None,
        snapshot_interval_seconds: int = 60,
    ) -> None:
        self._stub = ingest_grpc.SnapshotIngestServiceStub(channel)
        self._outbox = outbox
        self._metadata = internal_key_metadata(internal_api_key)
        self._metrics = metrics
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self._retry_now = asyncio.Event()
        self.connected = False
        self.snapshot_interval_seconds = snapshot_interval_seconds
        # What the ingest service said its interval is in its last answer (0: not said yet).
        self.ingest_snapshot_interval_seconds = 0

    @property
    def interval_mismatch(self) -> str | None:
        """Why snapshots are rejected when this gateway and the ingest service disagree on the interval."""
        theirs = self.ingest_snapshot_interval_seconds
        if theirs in (0, self.snapshot_interval_seconds):
            return None
        return (
            f"SNAPSHOT_INTERVAL_SECONDS differs: {self.snapshot_interval_seconds} on this gateway, "
            f"{theirs} on the ingest service (its snapshots are rejected)"
        )

    async def run(self) -> None:
        """Delivers forever; returns only when cancelled."""
        while True:
            try:
                await self._stream()
            except _RETRIED_ERRORS as error:
                self._record_failure(error)
            except Exception:
                # Unexpected, yet the sender must outlive it: the snapshots are still queued.
                logger.exception("Snapshot sender failed unexpectedly; reconnecting")
                self._record_failure(None)
            self.connected = False
            delay = self._backoff.next_delay()
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), timeout=delay)

    def retry_now(self) -> None:
        """Cuts the current backoff short (used when shutdown wants one last flush)."""
        self._retry_now.set()

    def _record_failure(self, error: BaseException | None) -> None:
        self._metrics.send_failures_total += 1
        detail = error.code().name if isinstance(error, grpc.aio.AioRpcError) else repr(error)
        logger.warning(
            "Snapshot stream failed; will re-send unacknowledged snapshots",
            extra={
                "error": detail,
                "outbox_depth": self._outbox.depth,
                "attempt": self._backoff.failures + 1,
            },
        )

    async def _stream(self) -> None:
        call = self._stub.StreamSnapshots(metadata=self._metadata)
        # One read is always pending: while idle it is how a stream closed by the server (a
        # restart, a drain) is noticed at once rather than at the next write.
        response = asyncio.ensure_future(call.read())
        try:
            while True:
                entries = await self._outbox.peek(self._batch_size)
                if not entries:
                    items = asyncio.ensure_future(self._outbox.wait_for_items())
                    try:
                        await asyncio.wait((items, response), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        items.cancel()
                    if response.done():
                        raise StreamBroken(f"stream ended while idle: {response.result()!r}")
                    continue
                await call.write(
                    ingest_pb2.StreamSnapshotsRequest(snapshots=[entry.message for entry in entries])
                )
                answer = await response
                if answer is grpc.aio.EOF:
                    raise StreamBroken("stream ended before acknowledging a batch")
                response = asyncio.ensure_future(call.read())
                self._note_ingest_interval(answer.snapshot_interval_seconds)
                await self._acknowledge(entries, answer.acks)
                self.connected = True
                self._backoff.reset()
        finally:
            # Whatever the pending read ends with, now or after the cancel below, is retrieved:
            # grpc.aio can end a cancelled read with the call's own error (UNAVAILABLE) rather
            # than CancelledError, which asyncio then logged as "Task exception was never
            # retrieved". The caller has already seen the failure that ended the stream.
            response.add_done_callback(_retrieve_outcome)
            response.cancel()
            call.cancel()

    def _note_ingest_interval(self, seconds: int) -> None:
        known = self.interval_mismatch
        self.ingest_snapshot_interval_seconds = seconds or self.ingest_snapshot_interval_seconds
        mismatch = self.interval_mismatch
        if mismatch is not None and mismatch != known:
            logger.warning("Snapshot interval mismatch: %s", mismatch)

    async def _acknowledge(
        self, entries: Sequence[OutboxEntry], acks: Sequence[ingest_pb2.SnapshotAck]
    ) -> None:
        if len(acks) != len(entries) or any(
            ack.auction_id != entry.message.auction_id
            or ack.minute_start.seconds != entry.message.minute_start.seconds
            for entry, ack in zip(entries, acks, strict=False)
        ):
            raise StreamBroken(f"{len(acks)} acknowledgements do not match the {len(entries)} snapshots sent")
        await self._outbox.remove([entry.entry_id for entry in entries])
        outcomes = Counter(_OUTCOME_NAMES.get(ack.outcome, "unspecified") for ack in acks)
        self._metrics.snapshots_acked.update(outcomes)
        self._metrics.last_ack_timestamp_seconds = time.time()
        fields: dict[str, object] = {
            "sent": len(acks),
            "stored": outcomes["stored"],
            "duplicate": outcomes["duplicate"],
            "skipped_analytics_disabled": outcomes["skipped_analytics_disabled"],
            "rejected": outcomes["rejected"],
            "outbox_depth": self._outbox.depth,
        }
        rejected = [ack for ack in acks if ack.outcome == ingest_pb2.SNAPSHOT_OUTCOME_REJECTED]
        if rejected:
            fields["first_rejection"] = f"{rejected[0].auction_id}: {rejected[0].detail}"
        logger.info("Analytics sent", extra=fields)


def _retrieve_outcome(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
