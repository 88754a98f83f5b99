"""Per-hour merged unique-viewer sketches, so that a range's distinct viewers cost one sketch per hour.

A snapshot's sketches cover its minute; merging every minute's sketches of a 90-day range would read
129,600 pairs of sketches. Each store therefore keeps, per auction and hour, the union of the hour's
sketches (identified and anonymous apart) and how many snapshots carried one, updated in the write
that stores the minutes. A range is answered from the rollups of its whole hours and from the raw
minutes of the partial hours at its ends, merged one sketch at a time into a
:class:`ingest_service.sketches.SketchMerger` (a cursor, never the range's sketches in a list).

CPC unions are idempotent and commutative, so merging a minute into its hour twice, or two writers
merging the same hour in any order, leaves the same sketch.

This module holds the SQLite side; ``mongo_sketch_rollups`` the MongoDB side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ingest_service.domain import Snapshot
from ingest_service.sketches import SketchMerger, merge_into

HOUR = 3600

SQLITE_TABLE = "viewer_hourly_sketches"

_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} (
    auction_id         TEXT    NOT NULL,
    hour_start         INTEGER NOT NULL,
    sketched_snapshots INTEGER NOT NULL,
    identified_sketch  BLOB,
    anonymous_sketch   BLOB,
    PRIMARY KEY (auction_id, hour_start)
) WITHOUT ROWID
"""

_SKETCHED = "(identified_sketch IS NOT NULL OR anonymous_sketch IS NOT NULL)"


def hour_of(epoch_seconds: int) -> int:
    return epoch_seconds - epoch_seconds % HOUR


@dataclass(slots=True)
class HourSketches:
    """The sketches of some minutes of one auction's hour, gathered for one merge into its rollup."""

    minutes: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)

    def add(self, minute_start: int, identified: bytes, anonymous: bytes) -> None:
        """Adds a minute's sketches; a minute already gathered keeps its first sketches."""
        self.minutes.setdefault(minute_start, (identified, anonymous))

    def merged_into(
        self, identified: bytes, anonymous: bytes, skip: Collection[int] = ()
    ) -> tuple[bytes, bytes]:
        """``(identified, anonymous)`` with the gathered minutes' sketches merged in, except ``skip``'s."""
        kept = [pair for minute, pair in self.minutes.items() if minute not in skip]
        return (
            merge_into(identified, (pair[0] for pair in kept)),
            merge_into(anonymous, (pair[1] for pair in kept)),
        )


def sketched_by_hour(snapshots: Iterable[Snapshot]) -> dict[tuple[str, int], HourSketches]:
    """The snapshots that carry a sketch, gathered per (auction, hour); a repeated minute counts once."""
    hours: dict[tuple[str, int], HourSketches] = {}
    for snapshot in snapshots:
        if snapshot.identified_sketch or snapshot.anonymous_sketch:
            key = (snapshot.auction_id, hour_of(snapshot.minute_start))
            hours.setdefault(key, HourSketches()).add(
                snapshot.minute_start, snapshot.identified_sketch, snapshot.anonymous_sketch
            )
    return hours


def ensure_sqlite_table(connection: sqlite3.Connection) -> None:
    """Creates the table; when it is new, rolls up the sketches of the minutes already stored.

    A file written by a version that stored sketches but kept no hourly rollups of them gains them
    here once. Call inside the write transaction that opens the store.
    """
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SQLITE_TABLE,)
    ).fetchone()
    connection.execute(_SQLITE_SCHEMA)
    if not exists:
        rebuild_sqlite_hours(connection, None, None)


def fold_into_sqlite(connection: sqlite3.Connection, newly_stored: Sequence[Snapshot]) -> None:
    """Merges the newly stored snapshots' sketches into their hours' rollups (in the batch's transaction)."""
    for (auction_id, hour_start), gathered in sketched_by_hour(newly_stored).items():
        _merge_sqlite_hour(connection, auction_id, hour_start, gathered)


def _merge_sqlite_hour(
    connection: sqlite3.Connection, auction_id: str, hour_start: int, gathered: HourSketches
) -> None:
    row = connection.execute(
        f"SELECT sketched_snapshots, identified_sketch, anonymous_sketch FROM {SQLITE_TABLE} "
        "WHERE auction_id = ? AND hour_start = ?",
        (auction_id, hour_start),
    ).fetchone()
    count, identified, anonymous = row if row is not None else (0, None, None)
    identified, anonymous = gathered.merged_into(identified or b"", anonymous or b"")
    connection.execute(
        f"INSERT OR REPLACE INTO {SQLITE_TABLE} "
        "(auction_id, hour_start, sketched_snapshots, identified_sketch, anonymous_sketch) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            auction_id,
            hour_start,
            count + len(gathered.minutes),
            identified or None,
            anonymous or None,
        ),
    )


def rebuild_sqlite_hours(connection: sqlite3.Connection, start: int | None, end: int | None) -> None:
    """Recomputes the rollups of the hours in ``[start, end)`` (None: unbounded) from the raw minutes.

    The minutes are read in primary-key order, so one (auction, hour) is gathered at a time. ``start``
    and ``end`` are whole hours.
    """
    low = -(2**62) if start is None else start
    high = 2**62 if end is None else end
    connection.execute(f"DELETE FROM {SQLITE_TABLE} WHERE hour_start >= ? AND hour_start < ?", (low, high))
    rows = connection.execute(
        "SELECT auction_id, minute_start, identified_sketch, anonymous_sketch FROM viewer_snapshots "
        f"WHERE minute_start >= ? AND minute_start < ? AND {_SKETCHED} ORDER BY auction_id, minute_start",
        (low, high),
    )
    current: tuple[str, int] | None = None
    gathered = HourSketches()
    # Reading viewer_snapshots while writing the rollup table: two tables, so the cursor is undisturbed.
    for auction_id, minute_start, identified, anonymous in rows:
        key = (auction_id, hour_of(minute_start))
        if key != current:
            if current is not None:
                _merge_sqlite_hour(connection, *current, gathered)
            current, gathered = key, HourSketches()
        gathered.add(minute_start, identified or b"", anonymous or b"")
    if current is not None:
        _merge_sqlite_hour(connection, *current, gathered)


def purge_sqlite_before(connection: sqlite3.Connection, cutoff: int) -> None:
    """Drops the rollups of hours before ``cutoff``'s and recounts the hour it cuts into."""
    cutoff_hour = hour_of(cutoff)
    connection.execute(f"DELETE FROM {SQLITE_TABLE} WHERE hour_start < ?", (cutoff_hour,))
    if cutoff > cutoff_hour:
        rebuild_sqlite_hours(connection, cutoff_hour, cutoff_hour + HOUR)


def merge_sqlite_range(
    connection: sqlite3.Connection, auction_id: str, start: int | None, end: int | None, merger: SketchMerger
) -> None:
    """Merges the sketches of the auction's snapshots with ``minute_start`` in ``[start, end)``.

    Whole hours come from the rollups, the partial hours at the ends from the minutes.
    """
    first_hour = None if start is None else -(-start // HOUR) * HOUR
    end_hour = None if end is None else hour_of(end)
    if first_hour is not None and end_hour is not None and first_hour >= end_hour:
        _merge_raw(connection, auction_id, start, end, merger)
        return
    if start is not None and first_hour is not None and start < first_hour:
        _merge_raw(connection, auction_id, start, first_hour, merger)
    rollups = connection.execute(
        f"SELECT identified_sketch, anonymous_sketch, sketched_snapshots FROM {SQLITE_TABLE} "
        "WHERE auction_id = ? AND hour_start >= ? AND hour_start < ?",
        (auction_id, -(2**62) if first_hour is None else first_hour, 2**62 if end_hour is None else end_hour),
    )
    for identified, anonymous, count in rollups:
        merger.add_merged(identified or b"", anonymous or b"", count)
    if end is not None and end_hour is not None and end_hour < end:
        _merge_raw(connection, auction_id, end_hour, end, merger)


def _merge_raw(
    connection: sqlite3.Connection, auction_id: str, start: int | None, end: int | None, merger: SketchMerger
) -> None:
    rows: Iterator[tuple[bytes | None, bytes | None]] = connection.execute(
        "SELECT identified_sketch, anonymous_sketch FROM viewer_snapshots "
        f"WHERE auction_id = ? AND minute_start >= ? AND minute_start < ? AND {_SKETCHED}",
        (auction_id, -(2**62) if start is None else start, 2**62 if end is None else end),
    )
    for identified, anonymous in rows:
        merger.add(identified or b"", anonymous or b"")
