"""Deciding each received snapshot's fate: rejected, skipped, stored or duplicate."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest_service.analytics_flags import AnalyticsFlagCache
from ingest_service.domain import Snapshot, SnapshotOutcome
from ingest_service.metrics import IngestMetrics
from ingest_service.storage.port import SnapshotStore
from ingest_service.validation import SnapshotRules
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A received snapshot that could not even be read as one (for example a missing timestamp)."""

    reason: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: SnapshotOutcome
    detail: str = ""


_SKIPPED = IngestResult(SnapshotOutcome.SKIPPED_ANALYTICS_DISABLED)
_RESULT_OF_STORE_OUTCOME = {
    SnapshotOutcome.STORED: IngestResult(SnapshotOutcome.STORED),
    SnapshotOutcome.DUPLICATE: IngestResult(SnapshotOutcome.DUPLICATE),
}


class SnapshotIngestor:
    """Validates a batch, drops what analytics-disabled auctions sent, and stores the rest in one write."""

    def __init__(
        self,
        store: SnapshotStore,
        flags: AnalyticsFlagCache,
        rules: SnapshotRules,
        clock: Callable[[], float],
        metrics: IngestMetrics,
    ) -> None:
        self._store = store
        self._flags = flags
        self._rules = rules
        self._clock = clock
        self._metrics = metrics
        # One line per reason per window: a misconfigured sender has every snapshot rejected.
        self._rejections = RateLimitedLog(logger)

    @property
    def snapshot_interval_seconds(self) -> int:
        """The interval every accepted ``minute_start`` is a multiple of (told to senders)."""
        return self._rules.snapshot_interval_seconds

    async def ingest(self, batch: Sequence[Snapshot | Rejection]) -> list[IngestResult]:
        """The result of each snapshot of ``batch``, in order.

        Raises:
            StorageUnavailable: the store could not be read or written; nothing of the batch
                is acknowledged, and re-sending it is safe.
        """
        now = self._clock()
        results: list[IngestResult | None] = [None] * len(batch)
        valid: list[tuple[int, Snapshot]] = []
        for position, item in enumerate(batch):
            if isinstance(item, Rejection):
                results[position] = IngestResult(SnapshotOutcome.REJECTED, item.reason)
                continue
            problem = self._rules.problem(item, now)
            if problem is None:
                valid.append((position, item))
            else:
                results[position] = IngestResult(SnapshotOutcome.REJECTED, problem)

        if valid:
            enabled = await self._flags.enabled_auctions({snapshot.auction_id for _, snapshot in valid})
            to_store: list[tuple[int, Snapshot]] = []
            for position, snapshot in valid:
                if snapshot.auction_id in enabled:
                    to_store.append((position, snapshot))
                else:
                    results[position] = _SKIPPED
            if to_store:
                outcomes = await self._store.insert_snapshots([snapshot for _, snapshot in to_store])
                for (position, _), outcome in zip(to_store, outcomes, strict=True):
                    results[position] = _RESULT_OF_STORE_OUTCOME[outcome]

        final = [result for result in results if result is not None]
        self._metrics.count_snapshots(
            (result.outcome.value for result in final),
            (result.detail for result in final if result.outcome is SnapshotOutcome.REJECTED),
        )
        self._log_rejections(batch, final)
        self._log_batch(final)
        return final

    def _log_rejections(self, batch: Sequence[Snapshot | Rejection], results: Sequence[IngestResult]) -> None:
        rejected: dict[str, list[str]] = {}
        for item, result in zip(batch, results, strict=True):
            if result.outcome is SnapshotOutcome.REJECTED:
                auction_id = item.auction_id if isinstance(item, Snapshot) else ""
                rejected.setdefault(result.detail, []).append(auction_id)
        for reason, auctions in rejected.items():
            self._rejections.warning(
                reason,
                "Viewer snapshots rejected: %s",
                reason,
                extra={
                    "reason": reason,
                    "rejected": len(auctions),
                    "first_auction_id": auctions[0],
                    "snapshot_interval_seconds": self._rules.snapshot_interval_seconds,
                },
            )

    @staticmethod
    def _log_batch(results: Sequence[IngestResult]) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        counts = Counter(result.outcome for result in results)
        fields: dict[str, object] = {
            "received": len(results),
            "stored": counts[SnapshotOutcome.STORED],
            "duplicate": counts[SnapshotOutcome.DUPLICATE],
            "skipped_analytics_disabled": counts[SnapshotOutcome.SKIPPED_ANALYTICS_DISABLED],
            "rejected": counts[SnapshotOutcome.REJECTED],
        }
        logger.info("Viewer snapshot saved", extra=fields)
