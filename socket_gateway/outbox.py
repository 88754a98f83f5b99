"""The durable outbox: snapshots wait in a local SQLite file until the ingest service acknowledges them."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from socket_gateway.aggregation import MinuteSnapshot
from socket_gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    auction_id TEXT NOT NULL,
    minute_start INTEGER NOT NULL,
    viewer_count INTEGER NOT NULL,
    avg_viewers REAL NOT NULL,
    peak_viewers INTEGER NOT NULL,
    min_viewers INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    unique_viewers INTEGER NOT NULL,
    partial INTEGER NOT NULL,
    gateway_id TEXT NOT NULL,
    UNIQUE (auction_id, minute_start)
)
"""
_COLUMNS = (
    "auction_id, minute_start, viewer_count, avg_viewers, peak_viewers, min_viewers, "
    "sample_count, unique_viewers, partial, gateway_id"
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A queued snapshot and the row id that removes it once acknowledged."""

    entry_id: int
    snapshot: MinuteSnapshot


class Outbox:
    """A FIFO of snapshots in a SQLite file, bounded by ``max_snapshots``.

    The calls are synchronous on purpose: a write is one small transaction per interval or per
    acknowledged batch, far cheaper than a thread hop, and keeping them on the event loop makes
    every call atomic with respect to the sampler and the sender.
    """

    def __init__(self, connection: sqlite3.Connection, max_snapshots: int, metrics: GatewayMetrics) -> None:
        self._db = connection
        self.max_snapshots = max_snapshots
        self._metrics = metrics
        self._depth: int = int(connection.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._has_items = asyncio.Event()
        self._empty = asyncio.Event()
        self._update_events()

    @classmethod
    def open(cls, path: str, max_snapshots: int, metrics: GatewayMetrics) -> Outbox:
        """Opens (creating if needed) the outbox file; what a previous process left queued is kept."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, isolation_level=None)
        # WAL with FULL sync: a committed snapshot survives a SIGKILL and a power cut alike; the
        # cost is one fsync per interval and per acknowledged batch.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(_SCHEMA)
        outbox = cls(connection, max_snapshots, metrics)
        if outbox.depth:
            logger.info("Outbox holds snapshots from before", extra={"depth": outbox.depth, "path": path})
        return outbox

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def full(self) -> bool:
        return self._depth >= self.max_snapshots

    def put(self, snapshots: Sequence[MinuteSnapshot]) -> int:
        """Queues ``snapshots`` in one transaction; returns how many were queued.

        At the cap the newest snapshots are dropped (logged and counted), not the oldest: the
        queue stays in time order, and what was already accepted keeps its place.
        A snapshot for an auction and minute already queued is ignored: the first one wins,
        as it would at the ingest service.
        """
        room = max(0, self.max_snapshots - self._depth)
        accepted, dropped = snapshots[:room], len(snapshots) - min(room, len(snapshots))
        if dropped:
            self._metrics.outbox_dropped_total += dropped
            logger.error(
                "Outbox full; snapshots dropped",
                extra={"dropped": dropped, "cap": self.max_snapshots, "depth": self._depth},
            )
        if not accepted:
            return 0
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                f"INSERT OR IGNORE INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        s.auction_id,
                        s.minute_start,
                        s.viewer_count,
                        s.avg_viewers,
                        s.peak_viewers,
                        s.min_viewers,
                        s.sample_count,
                        s.unique_viewers,
                        int(s.partial),
                        s.gateway_id,
                    )
                    for s in accepted
                ],
            )
            inserted = self._db.total_changes - before
        self._depth += inserted
        self._metrics.snapshots_enqueued_total += inserted
        self._update_events()
        return inserted

    def peek(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` queued snapshots, left in place until ``remove``."""
        rows = self._db.execute(f"SELECT id, {_COLUMNS} FROM outbox ORDER BY id LIMIT ?", (limit,))
        return [
            OutboxEntry(
                row[0],
                MinuteSnapshot(
                    auction_id=row[1],
                    minute_start=row[2],
                    viewer_count=row[3],
                    avg_viewers=row[4],
                    peak_viewers=row[5],
                    min_viewers=row[6],
                    sample_count=row[7],
                    unique_viewers=row[8],
                    partial=bool(row[9]),
                    gateway_id=row[10],
                ),
            )
            for row in rows
        ]

    def remove(self, entry_ids: Sequence[int]) -> None:
        """Deletes acknowledged entries in one transaction."""
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(entry_id,) for entry_id in entry_ids])
            removed = self._db.total_changes - before
        self._depth -= removed
        self._update_events()

    async def wait_for_items(self) -> None:
        await self._has_items.wait()

    async def wait_until_empty(self) -> None:
        await self._empty.wait()

    def close(self) -> None:
        self._db.close()

    def _update_events(self) -> None:
        if self._depth:
            self._has_items.set()
            self._empty.clear()
        else:
            self._has_items.clear()
            self._empty.set()

    def _transaction(self) -> sqlite3.Connection:
        # In autocommit mode (isolation_level=None) the connection's context manager does not open
        # a transaction, so one is begun explicitly; the context manager commits or rolls back.
        self._db.execute("BEGIN IMMEDIATE")
        return self._db
