"""Auction events in the snapshot store's SQLite file, on its connection and thread."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, EventOutcome, LotOutcome
from ingest_service.domain import AnalyticsRange
from ingest_service.storage.event_port import FunnelCounts
from ingest_service.storage.snapshot_details import SnapshotDetail, decode_samples
from ingest_service.storage.sqlite_companion import SqliteCompanionStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.sqlite_transactions import write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auction_events (
    event_id    TEXT    PRIMARY KEY,
    auction_id  TEXT    NOT NULL,
    occurred_at REAL    NOT NULL,
    kind        TEXT    NOT NULL,
    lot_id      TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    outcome     TEXT,
    amount      INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    bidder_id   TEXT    NOT NULL,
    channel     TEXT,
    stored_at   REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS auction_events_by_time ON auction_events (auction_id, occurred_at);
CREATE INDEX IF NOT EXISTS auction_events_by_age ON auction_events (occurred_at);
"""

_INSERT = """
INSERT INTO auction_events (
    event_id, auction_id, occurred_at, kind, lot_id, title, outcome, amount, currency, bidder_id,
    channel, stored_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (event_id) DO NOTHING
"""

_COLUMNS = (
    "event_id, auction_id, occurred_at, kind, lot_id, title, outcome, amount, currency, bidder_id, channel"
)

# Whole-range bounds for an unbounded query.
_UNBOUNDED = 2.0**62


class SqliteAuctionEventStore(SqliteCompanionStore):
    """The AuctionEventStore port beside the snapshots of a :class:`SqliteSnapshotStore`.

    Sharing its connection and thread keeps one writer on the file; the retention purge runs here,
    supervised like the snapshots' (same period, same retention).
    """

    PURGE_TASK = "sqlite-event-retention-purge"
    PURGED_MESSAGE = "Expired auction events purged"

    @classmethod
    async def open(
        cls,
        snapshots: SqliteSnapshotStore,
        *,
        retention_days: int,
        clock: Callable[[], float],
        purge_interval_seconds: float = 60.0,
    ) -> SqliteAuctionEventStore:
        """Creates the events table if needed and starts the periodic purge.

        Raises:
            StorageUnavailable: the table cannot be created.
        """
        return await cls._open_beside(
            snapshots,
            _SCHEMA,
            retention_days=retention_days,
            clock=clock,
            purge_interval_seconds=purge_interval_seconds,
        )

    async def insert_events(self, events: Sequence[AuctionEvent]) -> list[EventOutcome]:
        if not events:
            return []
        return await self._snapshots.run(functools.partial(_insert, events, self._clock()))

    async def query_events(
        self,
        query: AnalyticsRange,
        kinds: Collection[EventKind] = (),
        limit: int | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[AuctionEvent]:
        return await self._snapshots.run(functools.partial(_select_events, query, list(kinds), limit, after))

    async def funnel_counts(self, query: AnalyticsRange) -> FunnelCounts:
        return await self._snapshots.run(functools.partial(_funnel_counts, query))

    async def snapshot_details(self, query: AnalyticsRange) -> list[SnapshotDetail]:
        return await self._snapshots.run(functools.partial(_select_details, query))

    async def purge_expired(self) -> int:
        cutoff = self._clock() - self._retention_seconds
        return await self._snapshots.run(
            lambda connection: (
                connection.execute("DELETE FROM auction_events WHERE occurred_at < ?", (cutoff,)).rowcount
            )
        )


def _insert(
    events: Sequence[AuctionEvent], stored_at: float, connection: sqlite3.Connection
) -> list[EventOutcome]:
    outcomes: list[EventOutcome] = []
    with write_transaction(connection):
        for e in events:
            cursor = connection.execute(
                _INSERT,
                (
                    e.event_id,
                    e.auction_id,
                    e.occurred_at,
                    e.kind.value,
                    e.lot_id,
                    e.title,
                    e.outcome.value if e.outcome else None,
                    e.amount,
                    e.currency,
                    e.bidder_id,
                    e.channel.value if e.channel else None,
                    stored_at,
                ),
            )
            outcomes.append(EventOutcome.STORED if cursor.rowcount == 1 else EventOutcome.DUPLICATE)
    return outcomes


def _event_of(row: tuple[Any, ...]) -> AuctionEvent:
    event_id, auction_id, occurred_at, kind, lot_id, title, outcome, amount, currency, bidder_id, channel = (
        row
    )
    return AuctionEvent(
        event_id=str(event_id),
        auction_id=str(auction_id),
        occurred_at=float(occurred_at),
        kind=EventKind(kind),
        lot_id=str(lot_id),
        title=str(title),
        outcome=LotOutcome(outcome) if outcome else None,
        amount=int(amount),
        currency=str(currency),
        bidder_id=str(bidder_id),
        channel=BidChannel(channel) if channel else None,
    )


def _select_events(
    query: AnalyticsRange,
    kinds: list[EventKind],
    limit: int | None,
    after: tuple[float, str] | None,
    connection: sqlite3.Connection,
) -> list[AuctionEvent]:
    start = -_UNBOUNDED if query.start is None else query.start
    end = _UNBOUNDED if query.end is None else query.end
    sql = (
        f"SELECT {_COLUMNS} FROM auction_events WHERE auction_id = ? AND occurred_at >= ? AND occurred_at < ?"
    )
    parameters: list[object] = [query.auction_id, start, end]
    if kinds:
        sql += f" AND kind IN ({','.join('?' * len(kinds))})"
        parameters += [kind.value for kind in kinds]
    if after is not None:
        sql += " AND (occurred_at, event_id) > (?, ?)"
        parameters += list(after)
    sql += " ORDER BY occurred_at, event_id"
    if limit is not None:
        sql += " LIMIT ?"
        parameters.append(limit)
    return [_event_of(row) for row in connection.execute(sql, parameters)]


# One pass over the range's rows through the (auction_id, occurred_at) index.
_FUNNEL = """
SELECT COUNT(DISTINCT CASE WHEN kind = 'bid_placed' THEN bidder_id END),
       COUNT(CASE WHEN kind = 'bid_placed' THEN 1 END),
       COUNT(DISTINCT CASE WHEN kind = 'lot_closed' AND outcome = 'sold' THEN lot_id END),
       COUNT(DISTINCT CASE WHEN kind = 'lot_closed' AND outcome = 'sold' THEN bidder_id END)
FROM auction_events
WHERE auction_id = ? AND occurred_at >= ? AND occurred_at < ? AND kind IN ('bid_placed', 'lot_closed')
"""


def _funnel_counts(query: AnalyticsRange, connection: sqlite3.Connection) -> FunnelCounts:
    start = -_UNBOUNDED if query.start is None else query.start
    end = _UNBOUNDED if query.end is None else query.end
    bidders, bids, lots_sold, winners = connection.execute(_FUNNEL, (query.auction_id, start, end)).fetchone()
    return FunnelCounts(bidders=bidders, bids=bids, lots_sold=lots_sold, winners=winners)


def _select_details(query: AnalyticsRange, connection: sqlite3.Connection) -> list[SnapshotDetail]:
    start = -(2**62) if query.start is None else query.start
    end = 2**62 if query.end is None else query.end
    rows = connection.execute(
        "SELECT minute_start, viewer_count, avg_viewers, peak_viewers, min_viewers, sample_count, samples, "
        "identified_sketch, anonymous_sketch FROM viewer_snapshots "
        "WHERE auction_id = ? AND minute_start >= ? AND minute_start < ? ORDER BY minute_start",
        (query.auction_id, start, end),
    )
    return [
        SnapshotDetail(
            minute,
            count,
            avg,
            peak,
            low,
            samples_n,
            decode_samples(samples),
            identified or b"",
            anonymous or b"",
        )
        for minute, count, avg, peak, low, samples_n, samples, identified, anonymous in rows
    ]
