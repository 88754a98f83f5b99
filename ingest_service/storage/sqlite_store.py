"""The embedded store: a SQLite file in WAL mode, with a periodic purge in place of MongoDB's TTL monitor."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ingest_service.domain import (
    AnalyticsPoint,
    AnalyticsRange,
    AuctionSettings,
    RangeTotals,
    Snapshot,
    SnapshotOutcome,
    StorageUnavailable,
)
from ingest_service.sketches import SketchMerger, UniqueViewerCount
from ingest_service.storage.partial_aggregates import PartialAggregate, merge_by_bucket, totals_of
from ingest_service.storage.sketch_rollups import (
    ensure_sqlite_table,
    fold_into_sqlite,
    merge_sqlite_range,
    purge_sqlite_before,
)
from ingest_service.storage.snapshot_details import add_snapshot_detail_columns, encode_samples
from service_common.sqlite_transactions import write_transaction
from service_common.supervision import Supervisor, TaskHealth

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS viewer_snapshots (
    auction_id     TEXT    NOT NULL,
    minute_start   INTEGER NOT NULL,
    viewer_count   INTEGER NOT NULL,
    avg_viewers    REAL    NOT NULL,
    peak_viewers   INTEGER NOT NULL,
    min_viewers    INTEGER NOT NULL,
    sample_count   INTEGER NOT NULL,
    unique_viewers INTEGER NOT NULL,
    partial        INTEGER NOT NULL,
    gateway_id     TEXT    NOT NULL,
    stored_at      REAL    NOT NULL,
    PRIMARY KEY (auction_id, minute_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS viewer_snapshots_by_minute ON viewer_snapshots (minute_start);
CREATE TABLE IF NOT EXISTS viewer_hourly (
    auction_id        TEXT    NOT NULL,
    hour_start        INTEGER NOT NULL,
    snapshot_count    INTEGER NOT NULL,
    weighted_sum      REAL    NOT NULL,
    sample_total      INTEGER NOT NULL,
    peak_viewers      INTEGER NOT NULL,
    min_viewers       INTEGER NOT NULL,
    first_minute      INTEGER NOT NULL,
    last_minute       INTEGER NOT NULL,
    last_viewer_count INTEGER NOT NULL,
    PRIMARY KEY (auction_id, hour_start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS auction_settings (
    auction_id              TEXT    PRIMARY KEY,
    enable_viewer_analytics INTEGER NOT NULL,
    updated_at              REAL    NOT NULL
) WITHOUT ROWID;
"""

# Only a key conflict is ignored (a duplicate); any other constraint failure is an error.
_INSERT_SNAPSHOT = """
INSERT INTO viewer_snapshots (
    auction_id, minute_start, viewer_count, avg_viewers, peak_viewers, min_viewers,
    sample_count, unique_viewers, partial, gateway_id, stored_at,
    samples, identified_sketch, anonymous_sketch
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (auction_id, minute_start) DO NOTHING
"""

HOUR = 3600

# Raw snapshots grouped by bucket. The row holding each bucket's last minute is found through the
# primary key, so the bucket's closing viewer_count costs one index lookup per bucket, not a scan.
_RAW_BUCKETS = """
WITH buckets AS (
    SELECT (minute_start / :bucket) * :bucket AS bucket_start,
           COUNT(*)                           AS snapshots,
           SUM(avg_viewers * sample_count)    AS weighted_sum,
           SUM(sample_count)                  AS samples,
           MAX(peak_viewers)                  AS peak,
           MIN(min_viewers)                   AS low,
           MIN(minute_start)                  AS first_minute,
           MAX(minute_start)                  AS last_minute
    FROM viewer_snapshots
    WHERE auction_id = :auction AND minute_start >= :start AND minute_start < :end
    GROUP BY bucket_start
)
SELECT b.bucket_start, b.snapshots, b.weighted_sum, b.samples, b.peak, b.low,
       b.first_minute, b.last_minute, s.viewer_count
FROM buckets AS b
JOIN viewer_snapshots AS s ON s.auction_id = :auction AND s.minute_start = b.last_minute
"""

# One point per snapshot needs no grouping: the rows come in primary-key order already.
_RAW_ROWS = """
SELECT minute_start, 1, avg_viewers * sample_count, sample_count, peak_viewers, min_viewers,
       minute_start, minute_start, viewer_count
FROM viewer_snapshots
WHERE auction_id = :auction AND minute_start >= :start AND minute_start < :end
ORDER BY minute_start
"""

# Hourly rollups grouped by a bucket that is a whole number of hours: 90 days are 2,160 rows
# instead of 129,600, which keeps a long-range query within a dashboard's latency budget.
_ROLLUP_BUCKETS = """
WITH buckets AS (
    SELECT (hour_start / :bucket) * :bucket AS bucket_start,
           SUM(snapshot_count)               AS snapshots,
           SUM(weighted_sum)                 AS weighted_sum,
           SUM(sample_total)                 AS samples,
           MAX(peak_viewers)                 AS peak,
           MIN(min_viewers)                  AS low,
           MIN(first_minute)                 AS first_minute,
           MAX(last_minute)                  AS last_minute
    FROM viewer_hourly
    WHERE auction_id = :auction AND hour_start >= :start AND hour_start < :end
    GROUP BY bucket_start
)
SELECT b.bucket_start, b.snapshots, b.weighted_sum, b.samples, b.peak, b.low,
       b.first_minute, b.last_minute, h.last_viewer_count
FROM buckets AS b
JOIN viewer_hourly AS h ON h.auction_id = :auction AND h.hour_start = (b.last_minute / 3600) * 3600
"""

# Folds a batch's newly stored snapshots, pre-aggregated per hour, into the rollups. SQLite
# evaluates every SET expression against the row as it was, so the CASE sees the old last_minute.
_ADD_TO_ROLLUP = """
INSERT INTO viewer_hourly (
    auction_id, hour_start, snapshot_count, weighted_sum, sample_total, peak_viewers, min_viewers,
    first_minute, last_minute, last_viewer_count
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (auction_id, hour_start) DO UPDATE SET
    snapshot_count = snapshot_count + excluded.snapshot_count,
    weighted_sum = weighted_sum + excluded.weighted_sum,
    sample_total = sample_total + excluded.sample_total,
    peak_viewers = MAX(peak_viewers, excluded.peak_viewers),
    min_viewers = MIN(min_viewers, excluded.min_viewers),
    first_minute = MIN(first_minute, excluded.first_minute),
    last_viewer_count = CASE WHEN excluded.last_minute > last_minute
                             THEN excluded.last_viewer_count ELSE last_viewer_count END,
    last_minute = MAX(last_minute, excluded.last_minute)
"""

# Rebuilds the rollups of the hours in [:start, :end) from the raw snapshots (after a purge cut
# into an hour, or for a database written before rollups existed).
_REBUILD_ROLLUPS = """
INSERT INTO viewer_hourly
SELECT g.auction_id, g.hour_start, g.snapshots, g.weighted_sum, g.samples, g.peak, g.low,
       g.first_minute, g.last_minute, s.viewer_count
FROM (
    SELECT auction_id, (minute_start / 3600) * 3600 AS hour_start, COUNT(*) AS snapshots,
           SUM(avg_viewers * sample_count) AS weighted_sum, SUM(sample_count) AS samples,
           MAX(peak_viewers) AS peak, MIN(min_viewers) AS low,
           MIN(minute_start) AS first_minute, MAX(minute_start) AS last_minute
    FROM viewer_snapshots
    WHERE minute_start >= :start AND minute_start < :end
    GROUP BY auction_id, hour_start
) AS g
JOIN viewer_snapshots AS s ON s.auction_id = g.auction_id AND s.minute_start = g.last_minute
"""

# Deleting in slices keeps each write transaction short, so a large first purge does not
# hold the writer lock while snapshots are waiting to be stored.
_PURGE_SLICE = """
DELETE FROM viewer_snapshots WHERE (auction_id, minute_start) IN (
    SELECT auction_id, minute_start FROM viewer_snapshots WHERE minute_start < ? LIMIT 5000
)
"""

# Whole hours, so that the unbounded range's ends are hour-aligned like any other rollup bound.
_UNBOUNDED_START = -(2**40) * HOUR
_UNBOUNDED_END = 2**40 * HOUR
# One bucket spanning every possible timestamp: the totals of a range.
_WHOLE_RANGE_BUCKET = 2**42 * HOUR


class SqliteSnapshotStore:
    """The SnapshotStore port on a SQLite file.

    One connection, used only from one dedicated thread, serializes every statement; WAL mode
    with ``synchronous=FULL`` makes an acknowledged batch survive a crash of the process or the
    machine, which the gateways rely on when they drop acknowledged snapshots from their outbox.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        retention_seconds: int,
        clock: Callable[[], float],
        purge_interval_seconds: float,
    ) -> None:
        self._connection = connection
        self._executor = executor
        self._retention_seconds = retention_seconds
        self._clock = clock
        self._purge_interval_seconds = purge_interval_seconds
        self._supervisor = Supervisor(expected_errors=(StorageUnavailable,))

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        retention_days: int,
        clock: Callable[[], float] = time.time,
        purge_interval_seconds: float = 60.0,
        busy_timeout_ms: int = 5000,
    ) -> SqliteSnapshotStore:
        """Opens (creating if needed) the database at ``path`` and starts the periodic purge.

        Args:
            path: the database file; its directory is created if missing.
            retention_days: snapshots older than this are purged.
            clock: the time source of the purge, in epoch seconds.
            purge_interval_seconds: how often the purge runs, like MongoDB's 60-second TTL monitor.
            busy_timeout_ms: how long a statement waits for a lock held by another connection
                (a backup, an operator's sqlite3 shell) before the store reports itself unavailable.

        Raises:
            StorageUnavailable: the file (or its folder) cannot be made or opened, or its schema created.
        """
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                problem = f"cannot create {Path(path).parent}: {error.strerror or error}"
                raise StorageUnavailable(f"cannot open SQLite database {path}: {problem}") from error
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, path, busy_timeout_ms)
        except sqlite3.Error as error:
            executor.shutdown(wait=False)
            raise StorageUnavailable(f"cannot open SQLite database {path}: {error}") from error
        store = cls(
            connection,
            executor,
            retention_seconds=retention_days * 86_400,
            clock=clock,
            purge_interval_seconds=purge_interval_seconds,
        )
        # Supervised: a purge that fails (a full disk, a lock held too long) is logged once with its
        # cause, counted and retried with backoff, and never ends the loop.
        store._supervisor.start("sqlite-retention-purge", store._purge_periodically)
        logger.info("SQLite store opened", extra={"path": path, "retention_days": retention_days})
        return store

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, work, self._connection)
        except sqlite3.Error as error:
            raise StorageUnavailable(f"SQLite: {error}") from error

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``work`` on the store's connection and thread (for the auction events stored beside it).

        Raises:
            StorageUnavailable: SQLite failed.
        """
        return await self._run(work)

    async def insert_snapshots(self, snapshots: Sequence[Snapshot]) -> list[SnapshotOutcome]:
        stored_at = self._clock()
        return await self._run(functools.partial(_insert_snapshots, snapshots, stored_at))

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]:
        return await self._run(functools.partial(_get_settings, list(auction_ids)))

    async def set_viewer_analytics(self, auction_id: str, enabled: bool, now: float) -> AuctionSettings:
        return await self._run(functools.partial(_set_viewer_analytics, auction_id, enabled, now))

    async def query_points(self, query: AnalyticsRange, bucket_seconds: int) -> list[AnalyticsPoint]:
        parts = await self._run(functools.partial(_aggregates, query, bucket_seconds))
        return [part.to_point() for part in parts]

    async def query_totals(self, query: AnalyticsRange) -> RangeTotals:
        return totals_of(await self._run(functools.partial(_aggregates, query, _WHOLE_RANGE_BUCKET)))

    async def query_unique_viewers(self, query: AnalyticsRange) -> UniqueViewerCount:
        return await self._run(functools.partial(_unique_viewers, query))

    async def ping(self) -> None:
        await self._run(lambda connection: connection.execute("SELECT 1").fetchone())

    async def check_writable(self) -> None:
        await self._run(functools.partial(_probe_write, self._clock()))

    def background_health(self) -> list[TaskHealth]:
        """The store's supervised tasks (the retention purge), for the service's health."""
        return self._supervisor.health()

    async def purge_expired(self) -> int:
        """Deletes snapshots older than the retention period by the store's clock; returns how many."""
        cutoff = int(self._clock()) - self._retention_seconds
        return await self._run(functools.partial(_purge_before, cutoff))

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._purge_interval_seconds)
            purged = await self.purge_expired()
            if purged:
                logger.info("Expired snapshots purged", extra={"purged": purged})

    async def close(self) -> None:
        await self._supervisor.stop()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connection.close)
        self._executor.shutdown(wait=True)
        logger.info("SQLite store closed")


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    # Autocommit mode; transactions are opened explicitly around each batch.
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    connection.executescript(_SCHEMA)
    add_snapshot_detail_columns(connection)
    # Under the write lock: another process opening the same file at the same time must not build
    # the rollups a second time.
    with write_transaction(connection):
        has_snapshots = connection.execute("SELECT EXISTS (SELECT 1 FROM viewer_snapshots)").fetchone()[0]
        has_rollups = connection.execute("SELECT EXISTS (SELECT 1 FROM viewer_hourly)").fetchone()[0]
        if has_snapshots and not has_rollups:
            logger.info("Building hourly rollups for a database written before they existed")
            connection.execute(_REBUILD_ROLLUPS, {"start": _UNBOUNDED_START, "end": _UNBOUNDED_END})
        ensure_sqlite_table(connection)
    return connection


def _insert_snapshots(
    snapshots: Sequence[Snapshot], stored_at: float, connection: sqlite3.Connection
) -> list[SnapshotOutcome]:
    outcomes: list[SnapshotOutcome] = []
    stored, duplicate = SnapshotOutcome.STORED, SnapshotOutcome.DUPLICATE
    with write_transaction(connection):
        for s in snapshots:
            cursor = connection.execute(
                _INSERT_SNAPSHOT,
                (
                    s.auction_id,
                    s.minute_start,
                    s.viewer_count,
                    s.avg_viewers,
                    s.peak_viewers,
                    s.min_viewers,
                    s.sample_count,
                    s.unique_viewers,
                    s.partial,
                    s.gateway_id,
                    stored_at,
                    encode_samples(s.samples),
                    s.identified_sketch or None,
                    s.anonymous_sketch or None,
                ),
            )
            outcomes.append(stored if cursor.rowcount == 1 else duplicate)
        newly_stored = [s for s, outcome in zip(snapshots, outcomes, strict=True) if outcome is stored]
        connection.executemany(_ADD_TO_ROLLUP, _hourly_rollup_rows(newly_stored))
        fold_into_sqlite(connection, newly_stored)
    return outcomes


def _probe_write(now: float, connection: sqlite3.Connection) -> None:
    """One small committed write: whether the file takes writes at all (a lock held, a read-only file).

    It rewrites a page the file already has, so a disk with no room left for new pages can still
    pass it; a failed batch reports that case (see ingest_service.store_health).
    """
    with write_transaction(connection):
        connection.execute(
            "INSERT INTO store_probe (id, checked_at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            (now,),
        )


def _get_settings(auction_ids: list[str], connection: sqlite3.Connection) -> dict[str, AuctionSettings]:
    if not auction_ids:
        return {}
    placeholders = ",".join("?" * len(auction_ids))
    rows = connection.execute(
        "SELECT auction_id, enable_viewer_analytics, updated_at FROM auction_settings "
        f"WHERE auction_id IN ({placeholders})",
        auction_ids,
    ).fetchall()
    return {row[0]: AuctionSettings(row[0], bool(row[1]), row[2]) for row in rows}


def _set_viewer_analytics(
    auction_id: str, enabled: bool, now: float, connection: sqlite3.Connection
) -> AuctionSettings:
    # updated_at is when the flag last changed: setting the value it already has leaves the row alone.
    connection.execute(
        "INSERT INTO auction_settings (auction_id, enable_viewer_analytics, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (auction_id) DO UPDATE SET "
        "enable_viewer_analytics = excluded.enable_viewer_analytics, updated_at = excluded.updated_at "
        "WHERE enable_viewer_analytics != excluded.enable_viewer_analytics",
        (auction_id, enabled, now),
    )
    row = connection.execute(
        "SELECT enable_viewer_analytics, updated_at FROM auction_settings WHERE auction_id = ?", (auction_id,)
    ).fetchone()
    return AuctionSettings(auction_id, bool(row[0]), row[1])


def _purge_before(cutoff: int, connection: sqlite3.Connection) -> int:
    purged = 0
    while True:
        deleted = connection.execute(_PURGE_SLICE, (cutoff,)).rowcount
        purged += deleted
        if deleted == 0:
            break
    if purged:
        cutoff_hour = cutoff // HOUR * HOUR
        with write_transaction(connection):
            connection.execute("DELETE FROM viewer_hourly WHERE hour_start < ?", (cutoff_hour,))
            if cutoff > cutoff_hour:
                # The hour the cutoff falls in lost some of its minutes: recount it from what is left.
                connection.execute("DELETE FROM viewer_hourly WHERE hour_start = ?", (cutoff_hour,))
                connection.execute(_REBUILD_ROLLUPS, {"start": cutoff_hour, "end": cutoff_hour + HOUR})
            purge_sqlite_before(connection, cutoff)
    return purged


def _hourly_rollup_rows(snapshots: Sequence[Snapshot]) -> list[tuple[object, ...]]:
    """The snapshots pre-aggregated per auction and hour, as rows for ``_ADD_TO_ROLLUP``.

    This runs for every stored snapshot, so it accumulates into plain lists (count, weighted sum,
    samples, peak, min, first minute, last minute, last viewer count) rather than objects.
    """
    by_hour: dict[tuple[str, int], list[Any]] = {}
    for s in snapshots:
        minute = s.minute_start
        key = (s.auction_id, minute - minute % HOUR)
        running = by_hour.get(key)
        if running is None:
            by_hour[key] = [
                1,
                s.avg_viewers * s.sample_count,
                s.sample_count,
                s.peak_viewers,
                s.min_viewers,
                minute,
                minute,
                s.viewer_count,
            ]
            continue
        running[0] += 1
        running[1] += s.avg_viewers * s.sample_count
        running[2] += s.sample_count
        running[3] = max(running[3], s.peak_viewers)
        running[4] = min(running[4], s.min_viewers)
        running[5] = min(running[5], minute)
        if minute > running[6]:
            running[6] = minute
            running[7] = s.viewer_count
    return [(auction_id, hour, *running) for (auction_id, hour), running in by_hour.items()]


def _aggregates(
    query: AnalyticsRange, bucket_seconds: int, connection: sqlite3.Connection
) -> list[PartialAggregate]:
    """The range's snapshots aggregated per epoch-aligned bucket (0: per snapshot), oldest first.

    For buckets of whole hours, the whole hours inside the range come from the rollups and only
    the partial hours at its two ends from the raw snapshots.
    """
    start = _UNBOUNDED_START if query.start is None else query.start
    end = _UNBOUNDED_END if query.end is None else query.end

    def buckets(sql: str, bucket_start: int, bucket_end: int) -> list[PartialAggregate]:
        if bucket_start >= bucket_end:
            return []
        parameters = {"auction": query.auction_id, "start": bucket_start, "end": bucket_end}
        parameters["bucket"] = bucket_seconds or 1
        return [PartialAggregate(*row) for row in connection.execute(sql, parameters)]

    if bucket_seconds and bucket_seconds % HOUR == 0:
        whole_hours_start = -(-start // HOUR) * HOUR
        whole_hours_end = end // HOUR * HOUR
        if whole_hours_start < whole_hours_end:
            return merge_by_bucket(
                buckets(_RAW_BUCKETS, start, whole_hours_start)
                + buckets(_ROLLUP_BUCKETS, whole_hours_start, whole_hours_end)
                + buckets(_RAW_BUCKETS, whole_hours_end, end)
            )
    if not bucket_seconds:
        return buckets(_RAW_ROWS, start, end)
    return sorted(buckets(_RAW_BUCKETS, start, end), key=lambda part: part.bucket_start)


def _unique_viewers(query: AnalyticsRange, connection: sqlite3.Connection) -> UniqueViewerCount:
    """The range's distinct viewers from its hours' merged sketches (one read, on the store's thread)."""
    merger = SketchMerger()
    merge_sqlite_range(connection, query.auction_id, query.start, query.end, merger)
    totals = totals_of(_aggregates(query, _WHOLE_RANGE_BUCKET, connection))
    merger.count_unsketched(totals.snapshot_count - merger.sketched_snapshots)
    return merger.result()
