"""The auction-event store port: events unique on ``event_id``, and the snapshot details read with them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from ingest_service.auction_events import AuctionEvent, EventKind, EventOutcome
from ingest_service.audience import LotFacts
from ingest_service.domain import AnalyticsRange
from ingest_service.storage.snapshot_details import SnapshotDetail

EVENT_COLLECTION = "auctionevents"
# MongoDB: each lot's facts, kept as its events arrive (storage.lot_summaries).
LOT_COLLECTION = "auctionlots"


@dataclass(frozen=True, slots=True)
class FunnelCounts:
    """Over a range's events: distinct bidders and bids placed, lots sold and their distinct winners."""

    bidders: int
    bids: int
    lots_sold: int
    winners: int


class AuctionEventStore(Protocol):
    """Stores auction events and reads them back with the snapshots' details.

    Every method raises :class:`ingest_service.domain.StorageUnavailable` when the database cannot
    be reached or written. Events older than the snapshots' retention are removed like snapshots.
    """

    async def insert_events(self, events: Sequence[AuctionEvent]) -> list[EventOutcome]:
        """Stores each event unless one with its ``event_id`` exists (the first write wins).

        Returns:
            For each event, in order, ``STORED`` or ``DUPLICATE``.
        """
        ...

    async def query_events(
        self,
        query: AnalyticsRange,
        kinds: Collection[EventKind] = (),
        limit: int | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[AuctionEvent]:
        """The auction's events with ``occurred_at`` in the range, oldest first (ties by event_id).

        ``kinds`` empty: every kind. ``limit``: at most that many. ``after``: only events after this
        ``(occurred_at, event_id)`` in that order (the last of the previous page).
        """
        ...

    async def funnel_counts(self, query: AnalyticsRange) -> FunnelCounts:
        """The funnel's event counts over the range, from figures kept as the events arrived.

        Equal to ``audience.funnel`` over the range's events, which are read only where the kept
        figures cannot say (``storage.lot_summaries``).
        """
        ...

    async def lot_facts(self, auction_id: str, since: float | None) -> list[LotFacts]:
        """The lots opened at or after ``since`` (None: ever), with their closes and bids from then on.

        Equal to ``audience.lot_facts`` over the auction's lot events from ``since`` on, in the order
        the lots opened; from the per-lot figures kept as the events arrived, recomputed from a lot's
        own events only where they cannot say (``storage.lot_summaries``).
        """
        ...

    async def snapshot_details(self, query: AnalyticsRange, sketches: bool = True) -> list[SnapshotDetail]:
        """The auction's snapshots whose ``minute_start`` is in the range, oldest first.

        ``sketches`` False: the two sketches are left empty (not read), for the queries that need
        only the counts and samples.
        """
        ...

    async def purge_expired(self) -> int:
        """Removes events older than the retention period now; returns how many (MongoDB: its TTL does)."""
        ...

    async def close(self) -> None:
        """Stops the store's own background work (the connection is the snapshot store's)."""
        ...
