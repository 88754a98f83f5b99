"""The durable outbox: snapshots wait in a local SQLite file until the ingest service acknowledges them."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from service_common import viewer_snapshot
from service_common.config import ConfigError
from service_common.sqlite_transactions import write_transaction
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.snapshots.aggregation import MinuteSnapshot

logger = logging.getLogger(__name__)

# Each snapshot is kept as its serialized ViewerSnapshot message, sent as it is; the auction and minute
# beside it make the first snapshot of an auction-minute win, as it would at the ingest service.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    auction_id TEXT NOT NULL,
    minute_start INTEGER NOT NULL,
    message BLOB NOT NULL,
    UNIQUE (auction_id, minute_start)
)
"""
# One transaction writes at most this many snapshots, so a long backlog is written in steps that each
# hold SQLite's lock briefly.
_WRITE_BATCH = 5_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A queued snapshot, as the message that is sent, and the row id that removes it once acknowledged."""

    entry_id: int
    message: snapshot_pb2.ViewerSnapshot

    @property
    def snapshot(self) -> MinuteSnapshot:
        return viewer_snapshot.from_wire(self.message)


class OutboxUnwritable(Exception):
    """A write to the outbox file failed; the snapshots stay in memory and are written again later."""


class Outbox:
    """A FIFO of snapshots in a SQLite file, bounded by ``max_snapshots`` (in memory and on disk together).

    Closed intervals are ``offer``-ed without waiting: they join an in-memory queue that ``run_writer``
    (a supervised task) writes to the file. A write that fails (a full disk, another process holding
    the file's lock) leaves them in memory, counted in ``pending``, and makes ``write_error`` say why
    until a later write succeeds: a disk hiccup loses no minute, and the sampler never waits on the disk.

    Every SQLite call runs on one worker thread, never on the event loop (SQLite can wait up to 5 s on
    a lock); one thread keeps them in order. Only what is on disk is sent; a snapshot leaves the file
    only when acknowledged.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        lock_file: IO[bytes] | None,
        depth: int,
        max_snapshots: int,
        metrics: GatewayMetrics,
    ) -> None:
        self._db = connection
        self._executor = executor
        self._lock_file = lock_file
        self._depth = depth
        self.max_snapshots = max_snapshots
        self._metrics = metrics
        self._pending: deque[MinuteSnapshot] = deque()
        self._has_pending = asyncio.Event()
        self._has_items = asyncio.Event()
        self._empty = asyncio.Event()
        self.write_error: str | None = None
        self._update_events()

    @classmethod
    async def open(
        cls, path: str, max_snapshots: int, metrics: GatewayMetrics, *, busy_timeout_seconds: float = 5.0
    ) -> Outbox:
        """Opens (creating if needed) the outbox file; what a previous process left queued is kept.

        Args:
            path: the SQLite file (``:memory:`` for none).
            max_snapshots: the cap, in memory and on disk together.
            metrics: the gateway's counters.
            busy_timeout_seconds: how long a write waits on another holder of SQLite's lock before it
                fails (and is retried later from memory).

        Raises:
            ConfigError: another process has this outbox file open (``OUTBOX_PATH``).
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        loop = asyncio.get_running_loop()
        try:
            lock_file = None if path == ":memory:" else _lock_exclusively(path)
            try:
                connection, depth = await loop.run_in_executor(executor, _connect, path, busy_timeout_seconds)
            except BaseException:
                if lock_file is not None:
                    lock_file.close()
                raise
        except BaseException:
            executor.shutdown(wait=False)
            raise
        outbox = cls(connection, executor, lock_file, depth, max_snapshots, metrics)
        if depth:
            logger.info("Outbox holds snapshots from before", extra={"depth": depth, "path": path})
        return outbox

    @property
    def depth(self) -> int:
        """Snapshots not yet acknowledged: on disk plus those waiting in memory to be written."""
        return self._depth + len(self._pending)

    @property
    def pending(self) -> int:
        """Snapshots in memory that the file has not accepted yet."""
        return len(self._pending)

    @property
    def full(self) -> bool:
        return self.depth >= self.max_snapshots

    def offer(self, snapshots: Sequence[MinuteSnapshot]) -> int:
        """Queues ``snapshots`` for writing; returns how many were taken (the rest were over the cap).

        At the cap the newest snapshots are dropped (logged and counted), not the oldest: the
        queue stays in time order, and what was already accepted keeps its place.
        """
        room = max(0, self.max_snapshots - self.depth)
        accepted = snapshots[:room]
        dropped = len(snapshots) - len(accepted)
        if dropped:
            self._metrics.outbox_dropped_total += dropped
            logger.error(
                "Outbox full; snapshots dropped",
                extra={"dropped": dropped, "cap": self.max_snapshots, "depth": self.depth},
            )
        if accepted:
            self._pending.extend(accepted)
            self._has_pending.set()
            self._update_events()
        return len(accepted)

    async def run_writer(self) -> None:
        """Writes what was offered to the file, oldest first, until cancelled.

        Raises:
            OutboxUnwritable: a write failed; what it held stays queued (the supervisor retries).
        """
        while True:
            await self._has_pending.wait()
            await self.write_pending()

    async def write_pending(self) -> None:
        """Writes every snapshot waiting in memory, in batches.

        Raises:
            OutboxUnwritable: a write failed; the snapshots it held stay in memory.
        """
        while self._pending:
            batch = [self._pending[index] for index in range(min(_WRITE_BATCH, len(self._pending)))]
            try:
                inserted = await self._call(_insert, batch)
            except sqlite3.Error as error:
                self._metrics.outbox_write_failures_total += 1
                if self.write_error is None:
                    logger.error(
                        "Outbox write failed; keeping snapshots in memory",
                        extra={"error": str(error), "pending": len(self._pending)},
                    )
                self.write_error = str(error)
                raise OutboxUnwritable(str(error)) from error
            for _ in batch:
                self._pending.popleft()
            self._depth += inserted
            self._metrics.snapshots_enqueued_total += inserted
            if self.write_error is not None:
                logger.info(
                    "Outbox writable again", extra={"written": inserted, "pending": len(self._pending)}
                )
                self.write_error = None
            self._update_events()
        self._has_pending.clear()

    async def peek(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` snapshots on disk, left in place until ``remove``."""
        return await self._call(_peek, limit)

    async def remove(self, entry_ids: Sequence[int]) -> None:
        """Deletes acknowledged entries in one transaction."""
        removed = await self._call(_remove, entry_ids)
        self._depth -= removed
        self._update_events()

    async def wait_for_items(self) -> None:
        """Returns once a snapshot is on disk, ready to be sent."""
        await self._has_items.wait()

    async def wait_until_empty(self) -> None:
        """Returns once nothing is left to deliver, in memory or on disk."""
        await self._empty.wait()

    async def close(self) -> None:
        """Writes what is still in memory if it can, then closes the file and gives up its lock."""
        if self._pending:
            try:
                await self.write_pending()
            except OutboxUnwritable:
                logger.critical(
                    "Outbox still not writable at stop; these snapshots are lost",
                    extra={"lost": len(self._pending), "error": self.write_error},
                )
        try:
            await self._call(sqlite3.Connection.close)
        finally:
            self._executor.shutdown(wait=True)
            if self._lock_file is not None:
                self._lock_file.close()

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, self._db, *args)

    def _update_events(self) -> None:
        if self._depth:
            self._has_items.set()
        else:
            self._has_items.clear()
        if self.depth:
            self._empty.clear()
        else:
            self._empty.set()


def _lock_exclusively(path: str) -> IO[bytes]:
    """Takes ``path``'s lock file for this process, so two gateways never send one outbox twice."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock_file = open(f"{path}.lock", "a+b")  # noqa: SIM115 - held open for the outbox's lifetime
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().decode(errors="replace").strip() or "unknown"
        lock_file.close()
        raise ConfigError(
            "OUTBOX_PATH",
            f"{path} is in use by another gateway process (pid {holder}); each gateway needs its own outbox",
        ) from None
    lock_file.truncate(0)
    lock_file.write(str(os.getpid()).encode())
    lock_file.flush()
    return lock_file


def _connect(path: str, busy_timeout_seconds: float) -> tuple[sqlite3.Connection, int]:
    connection = sqlite3.connect(
        path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
    )
    # WAL with FULL sync: a committed snapshot survives a SIGKILL and a power cut alike; the cost is
    # one fsync per interval and per acknowledged batch.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    with write_transaction(connection):
        legacy = _legacy_columns(connection)
        if legacy:
            connection.execute(f"ALTER TABLE outbox RENAME TO {_LEGACY_TABLE}")
        connection.execute(_SCHEMA)
        if legacy:
            _convert_legacy_rows(connection, legacy)
    depth = int(connection.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    return connection, depth


# Versions before the serialized message kept one column per field of the record, named as its fields.
_LEGACY_TABLE = "outbox_columns"


def _legacy_columns(connection: sqlite3.Connection) -> list[str]:
    """The record's fields that an outbox table written by an earlier version holds as columns ([]: none)."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(outbox)")}
    if not columns or "message" in columns:
        return []
    return [field.name for field in dataclasses.fields(MinuteSnapshot) if field.name in columns]


def _convert_legacy_rows(connection: sqlite3.Connection, legacy: list[str]) -> None:
    """Moves the earlier version's queued snapshots into the outbox, keeping their ids and so their order."""
    rows = connection.execute(f"SELECT id, {', '.join(legacy)} FROM {_LEGACY_TABLE} ORDER BY id")
    converted = []
    for entry_id, *values in rows:
        fields = dict(zip(legacy, values, strict=True))
        fields["partial"] = bool(fields["partial"])
        snapshot = MinuteSnapshot(**fields)
        converted.append((entry_id, snapshot.auction_id, snapshot.minute_start, _serialized(snapshot)))
    connection.executemany(
        "INSERT INTO outbox (id, auction_id, minute_start, message) VALUES (?, ?, ?, ?)", converted
    )
    connection.execute(f"DROP TABLE {_LEGACY_TABLE}")
    if converted:
        logger.info("Outbox converted from the per-field layout", extra={"snapshots": len(converted)})


def _serialized(snapshot: MinuteSnapshot) -> bytes:
    return viewer_snapshot.to_wire(snapshot).SerializeToString()


def _insert(db: sqlite3.Connection, snapshots: Sequence[MinuteSnapshot]) -> int:
    # A snapshot for an auction and minute already queued is ignored: the first one wins, as it
    # would at the ingest service.
    with write_transaction(db):
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO outbox (auction_id, minute_start, message) VALUES (?, ?, ?)",
            [(s.auction_id, s.minute_start, _serialized(s)) for s in snapshots],
        )
        return db.total_changes - before


def _peek(db: sqlite3.Connection, limit: int) -> list[OutboxEntry]:
    rows = db.execute("SELECT id, message FROM outbox ORDER BY id LIMIT ?", (limit,))
    return [
        OutboxEntry(entry_id, snapshot_pb2.ViewerSnapshot.FromString(message)) for entry_id, message in rows
    ]


def _remove(db: sqlite3.Connection, entry_ids: Sequence[int]) -> int:
    with write_transaction(db):
        before = db.total_changes
        db.executemany("DELETE FROM outbox WHERE id = ?", [(entry_id,) for entry_id in entry_ids])
        return db.total_changes - before
