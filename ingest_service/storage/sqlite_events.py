"""Auction events in the snapshot store's SQLite file, on its connection and thread."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, EventOutcome, LotOutcome
from ingest_service.audience import LotClose, LotFacts
from ingest_service.domain import AnalyticsRange, StorageUnavailable
from ingest_service.storage.event_port import FunnelCounts
from ingest_service.storage.lot_summaries import horizon
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
-- A lot's openings, closes and bids, and an auction's closes, without visiting its other events.
CREATE INDEX IF NOT EXISTS auction_events_by_lot
    ON auction_events (auction_id, kind, lot_id, occurred_at, bidder_id, outcome);
"""

# Kept as the events arrive (ingest_service.storage.lot_summaries): a lot's facts over all its
# events, and a bidder's first and last bid and how many.
_SUMMARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS auction_lots (
    auction_id       TEXT    NOT NULL,
    lot_id           TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    opened_at        REAL    NOT NULL,
    last_opened_at   REAL    NOT NULL,
    closed_at        REAL,
    outcome          TEXT,
    amount           INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    winner_bidder_id TEXT    NOT NULL,
    bids             INTEGER NOT NULL,
    bidders          INTEGER NOT NULL,
    last_bid_at      REAL,
    PRIMARY KEY (auction_id, lot_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auction_bidders (
    auction_id   TEXT    NOT NULL,
    bidder_id    TEXT    NOT NULL,
    first_bid_at REAL    NOT NULL,
    last_bid_at  REAL    NOT NULL,
    bids         INTEGER NOT NULL,
    PRIMARY KEY (auction_id, bidder_id)
) WITHOUT ROWID;
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
        """Creates the events' tables if needed and starts the periodic purge.

        A file whose events were stored before the per-lot and per-bidder tables existed gains them
        here, computed once from its events.

        Raises:
            StorageUnavailable: the tables cannot be created or filled.
        """
        summaries_existed = await snapshots.run(_summaries_exist)
        store = await cls._open_beside(
            snapshots,
            _SCHEMA + _SUMMARY_SCHEMA,
            retention_days=retention_days,
            clock=clock,
            purge_interval_seconds=purge_interval_seconds,
        )
        if not summaries_existed:
            try:
                await snapshots.run(_rebuild_summaries)
            except StorageUnavailable:
                await store.close()
                raise
        return store

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
        horizon_at = horizon(self._clock(), self._retention_seconds)
        return await self._snapshots.run(functools.partial(_funnel_counts, query, horizon_at))

    async def lot_facts(self, auction_id: str, since: float | None) -> list[LotFacts]:
        horizon_at = horizon(self._clock(), self._retention_seconds)
        return await self._snapshots.run(functools.partial(_lot_facts, auction_id, since, horizon_at))

    async def snapshot_details(self, query: AnalyticsRange, sketches: bool = True) -> list[SnapshotDetail]:
        return await self._snapshots.run(functools.partial(_select_details, query, sketches))

    async def purge_expired(self) -> int:
        cutoff = self._clock() - self._retention_seconds
        return await self._snapshots.run(functools.partial(_purge_before, cutoff))


def _insert(
    events: Sequence[AuctionEvent], stored_at: float, connection: sqlite3.Connection
) -> list[EventOutcome]:
    outcomes: list[EventOutcome] = []
    lots: set[tuple[str, str]] = set()
    bidders: dict[tuple[str, str], list[float]] = {}
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
            stored = cursor.rowcount == 1
            outcomes.append(EventOutcome.STORED if stored else EventOutcome.DUPLICATE)
            # Only what this batch newly stored changes a kept figure; a duplicate changes nothing.
            if stored and e.kind in _LOT_KINDS:
                lots.add((e.auction_id, e.lot_id))
                if e.kind is EventKind.BID_PLACED:
                    bidders.setdefault((e.auction_id, e.bidder_id), []).append(e.occurred_at)
        connection.executemany(
            _ADD_BIDS,
            [
                (auction, bidder, min(times), max(times), len(times))
                for (auction, bidder), times in bidders.items()
            ],
        )
        for auction_id, lot_id in lots:
            _keep_lot(connection, auction_id, lot_id)
    return outcomes


_LOT_KINDS = frozenset((EventKind.LOT_OPENED, EventKind.LOT_CLOSED, EventKind.BID_PLACED))

_ADD_BIDS = """
INSERT INTO auction_bidders (auction_id, bidder_id, first_bid_at, last_bid_at, bids) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (auction_id, bidder_id) DO UPDATE SET
    first_bid_at = MIN(first_bid_at, excluded.first_bid_at),
    last_bid_at = MAX(last_bid_at, excluded.last_bid_at),
    bids = bids + excluded.bids
"""

_KEEP_LOT = """
INSERT OR REPLACE INTO auction_lots (
    auction_id, lot_id, title, opened_at, last_opened_at, closed_at, outcome, amount, currency,
    winner_bidder_id, bids, bidders, last_bid_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _keep_lot(connection: sqlite3.Connection, auction_id: str, lot_id: str) -> None:
    """Recomputes the lot's kept facts from all its events (a few index lookups: its own rows only)."""
    facts = _lot_facts_of_events(connection, auction_id, lot_id, None)
    if facts is None:
        connection.execute(
            "DELETE FROM auction_lots WHERE auction_id = ? AND lot_id = ?", (auction_id, lot_id)
        )
        return
    (last_opened_at,) = connection.execute(
        "SELECT MAX(occurred_at) FROM auction_events INDEXED BY auction_events_by_lot "
        "WHERE auction_id = ? AND kind = 'lot_opened' AND lot_id = ?",
        (auction_id, lot_id),
    ).fetchone()
    close = facts.close
    connection.execute(
        _KEEP_LOT,
        (
            auction_id,
            lot_id,
            facts.title,
            facts.opened_at,
            last_opened_at,
            close.closed_at if close else None,
            close.outcome.value if close and close.outcome else None,
            close.amount if close else 0,
            close.currency if close else "",
            close.winner_bidder_id if close else "",
            facts.bids,
            facts.bidders,
            facts.last_bid_at,
        ),
    )


def _lot_facts_of_events(
    connection: sqlite3.Connection, auction_id: str, lot_id: str, since: float | None
) -> LotFacts | None:
    """The lot's facts over its events from ``since`` on (``audience.lot_facts`` in SQL); None: not opened."""
    start = -_UNBOUNDED if since is None else since
    opening = connection.execute(
        "SELECT occurred_at, title FROM auction_events INDEXED BY auction_events_by_lot "
        "WHERE auction_id = ? AND kind = 'lot_opened' AND lot_id = ? AND occurred_at >= ? "
        "ORDER BY occurred_at, event_id LIMIT 1",
        (auction_id, lot_id, start),
    ).fetchone()
    if opening is None:
        return None
    opened_at, title = opening
    close = connection.execute(
        "SELECT occurred_at, outcome, amount, currency, bidder_id FROM auction_events "
        "INDEXED BY auction_events_by_lot "
        "WHERE auction_id = ? AND kind = 'lot_closed' AND lot_id = ? AND occurred_at >= ? "
        "ORDER BY occurred_at, event_id LIMIT 1",
        (auction_id, lot_id, start),
    ).fetchone()
    bids, bidders, last_bid_at = connection.execute(
        "SELECT COUNT(*), COUNT(DISTINCT bidder_id), MAX(occurred_at) FROM auction_events "
        "INDEXED BY auction_events_by_lot "
        "WHERE auction_id = ? AND kind = 'bid_placed' AND lot_id = ? AND occurred_at >= ?",
        (auction_id, lot_id, opened_at),
    ).fetchone()
    return LotFacts(
        lot_id=lot_id,
        title=str(title),
        opened_at=float(opened_at),
        close=None if close is None else _close_of_row(close),
        bids=int(bids),
        bidders=int(bidders),
        last_bid_at=None if last_bid_at is None else float(last_bid_at),
    )


# Looked up once: an enum member's attribute and an enum call cost a Python call each, per lot.
_OUTCOMES = {outcome.value: outcome for outcome in LotOutcome}


def _close_of_row(row: tuple[Any, ...]) -> LotClose:
    closed_at, outcome, amount, currency, winner = row
    sold = _OUTCOMES.get(outcome) is LotOutcome.SOLD
    return LotClose(
        float(closed_at),
        _OUTCOMES.get(outcome),
        int(amount) if sold else 0,
        str(currency) if sold else "",
        str(winner) if sold else "",
    )


# The kept lots with an opening from the start on; ``kept`` says whether the row answers as it is
# (lot_summaries.lot_answer, in SQL: every row is read, and building each in Python costs more).
_KEPT_LOTS = """
SELECT lot_id, title, opened_at, closed_at, outcome, amount, currency, winner_bidder_id, bids, bidders,
       last_bid_at, opened_at >= :low AND (closed_at IS NULL OR closed_at >= :low) AS kept
FROM auction_lots
WHERE auction_id = :auction AND last_opened_at >= :start
"""


def _lot_facts(
    auction_id: str, since: float | None, horizon_at: float, connection: sqlite3.Connection
) -> list[LotFacts]:
    start = -_UNBOUNDED if since is None else since
    rows = connection.execute(
        _KEPT_LOTS, {"auction": auction_id, "start": start, "low": max(start, horizon_at)}
    ).fetchall()
    facts = []
    for row in rows:
        (
            lot_id,
            title,
            opened_at,
            closed_at,
            outcome,
            amount,
            currency,
            winner,
            bids,
            bidders,
            last_bid,
            kept,
        ) = row
        if not kept:
            recomputed = _lot_facts_of_events(connection, auction_id, lot_id, since)
            if recomputed is not None:
                facts.append(recomputed)
            continue
        # Kept closes are stored as audience.close_of makes them (price and winner only when sold).
        close = None
        if closed_at is not None:
            close = LotClose(closed_at, _OUTCOMES.get(outcome), amount, currency, winner)
        facts.append(LotFacts(lot_id, title, opened_at, close, bids, bidders, last_bid))
    facts.sort(key=lambda each: (each.opened_at, each.lot_id))
    return facts


def _summaries_exist(connection: sqlite3.Connection) -> bool:
    return (
        connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'auction_lots'"
        ).fetchone()
        is not None
    )


def _rebuild_summaries(connection: sqlite3.Connection) -> None:
    """Fills the per-lot and per-bidder tables from every stored event."""
    with write_transaction(connection):
        connection.execute("DELETE FROM auction_bidders")
        connection.execute(
            "INSERT INTO auction_bidders (auction_id, bidder_id, first_bid_at, last_bid_at, bids) "
            "SELECT auction_id, bidder_id, MIN(occurred_at), MAX(occurred_at), COUNT(*) FROM auction_events "
            "WHERE kind = 'bid_placed' GROUP BY auction_id, bidder_id"
        )
        connection.execute("DELETE FROM auction_lots")
        opened = connection.execute(
            "SELECT DISTINCT auction_id, lot_id FROM auction_events WHERE kind = 'lot_opened'"
        ).fetchall()
        for auction_id, lot_id in opened:
            _keep_lot(connection, auction_id, lot_id)


def _purge_before(cutoff: float, connection: sqlite3.Connection) -> int:
    """Deletes the events before ``cutoff``, and the kept figures none of whose events remain.

    A figure some of whose events went stays as it is: it counts events before the retention
    horizon, so queries recompute it from the events left (``lot_summaries``).
    """
    with write_transaction(connection):
        purged = connection.execute("DELETE FROM auction_events WHERE occurred_at < ?", (cutoff,)).rowcount
        connection.execute("DELETE FROM auction_lots WHERE last_opened_at < ?", (cutoff,))
        connection.execute("DELETE FROM auction_bidders WHERE last_bid_at < ?", (cutoff,))
    return int(purged)


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


# The range's bidders from the kept per-bidder figures: how many, their bids, and how many have bids
# both inside and (maybe) outside it, or before the retention horizon, which only their events can say.
_FUNNEL_BIDDERS = """
SELECT COUNT(*), TOTAL(bids), COUNT(CASE WHEN first_bid_at < :low OR last_bid_at >= :end THEN 1 END)
FROM auction_bidders
WHERE auction_id = :auction AND last_bid_at >= :start AND first_bid_at < :end
"""

# The same from the range's bids themselves (one pass over them).
_FUNNEL_BIDS = """
SELECT COUNT(DISTINCT bidder_id), COUNT(*) FROM auction_events
WHERE auction_id = ? AND kind = 'bid_placed' AND occurred_at >= ? AND occurred_at < ?
"""

# An auction's closes are few (one a lot): read through the by-lot index, which holds every column used.
# Named, here and for a lot's own events: without statistics SQLite prefers the by-time index for a
# time range, and would walk every event of the auction's range to find a lot's few.
_FUNNEL_SALES = """
SELECT COUNT(DISTINCT lot_id), COUNT(DISTINCT bidder_id) FROM auction_events INDEXED BY auction_events_by_lot
WHERE auction_id = ? AND kind = 'lot_closed' AND outcome = 'sold' AND occurred_at >= ? AND occurred_at < ?
"""


def _funnel_counts(query: AnalyticsRange, horizon_at: float, connection: sqlite3.Connection) -> FunnelCounts:
    start = -_UNBOUNDED if query.start is None else query.start
    end = _UNBOUNDED if query.end is None else query.end
    bounds = (query.auction_id, start, end)
    bidders, bids, undecided = connection.execute(
        _FUNNEL_BIDDERS,
        {"auction": query.auction_id, "start": start, "end": end, "low": max(start, horizon_at)},
    ).fetchone()
    if undecided:
        bidders, bids = connection.execute(_FUNNEL_BIDS, bounds).fetchone()
    lots_sold, winners = connection.execute(_FUNNEL_SALES, bounds).fetchone()
    return FunnelCounts(bidders=int(bidders), bids=int(bids), lots_sold=int(lots_sold), winners=int(winners))


def _select_details(
    query: AnalyticsRange, sketches: bool, connection: sqlite3.Connection
) -> list[SnapshotDetail]:
    start = -(2**62) if query.start is None else query.start
    end = 2**62 if query.end is None else query.end
    # Without sketches the two blobs (about 1 KB a minute) are never read from the file.
    sketch_columns = "identified_sketch, anonymous_sketch" if sketches else "NULL, NULL"
    rows = connection.execute(
        "SELECT minute_start, viewer_count, avg_viewers, peak_viewers, min_viewers, sample_count, samples, "
        f"{sketch_columns} FROM viewer_snapshots "
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
