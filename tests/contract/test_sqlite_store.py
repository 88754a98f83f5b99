"""What only the SQLite adapter has: a file that survives restarts, a purge on its own clock, locks."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from ingest_service import audience
from ingest_service.auction_events import EventKind
from ingest_service.domain import AnalyticsRange, StorageUnavailable
from ingest_service.sketches import SketchMerger
from ingest_service.storage.event_port import FunnelCounts
from ingest_service.storage.sqlite_events import SqliteAuctionEventStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from tests.contract.test_lot_facts_contract import lots
from tests.support import FakeClock, make_snapshot

DAY = 86_400


async def count(store: SqliteSnapshotStore, auction_id: str) -> int:
    return (await store.query_totals(AnalyticsRange(auction_id, None, None))).snapshot_count


async def test_data_survives_reopening_the_file(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "nested" / "dir" / "analytics.sqlite3")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    await store.insert_snapshots([make_snapshot("a", int(clock.now) - 60)])
    await store.set_viewer_analytics("a", True, clock.now)
    await store.close()

    reopened = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    try:
        assert await count(reopened, "a") == 1
        assert (await reopened.get_settings(["a"]))["a"].enable_viewer_analytics
    finally:
        await reopened.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_purge_follows_the_store_clock(tmp_path: Path, clock: FakeClock) -> None:
    store = await SqliteSnapshotStore.open(str(tmp_path / "a.sqlite3"), retention_days=90, clock=clock)
    try:
        now = int(clock.now)
        await store.insert_snapshots(
            [make_snapshot("a", now - 89 * DAY), make_snapshot("a", now - 80 * DAY), make_snapshot("a", now)]
        )
        assert await store.purge_expired() == 0

        clock.advance(2 * DAY)  # the 89-day-old snapshot is now 91 days old
        assert await store.purge_expired() == 1
        assert await count(store, "a") == 2

        clock.advance(20 * DAY)
        assert await store.purge_expired() == 1
        assert await count(store, "a") == 1
    finally:
        await store.close()


async def test_periodic_purge_runs_by_itself(tmp_path: Path, clock: FakeClock) -> None:
    store = await SqliteSnapshotStore.open(
        str(tmp_path / "a.sqlite3"), retention_days=1, clock=clock, purge_interval_seconds=0.05
    )
    try:
        await store.insert_snapshots([make_snapshot("a", int(clock.now) - 2 * DAY)])
        # No event marks a purge, so poll; the bound turns "never purged" into a failure.
        async with asyncio.timeout(5):
            while await count(store, "a"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await store.close()


async def test_a_failing_purge_is_logged_once_with_its_cause_counted_and_retried(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "a.sqlite3")
    store = await SqliteSnapshotStore.open(
        path, retention_days=1, clock=clock, purge_interval_seconds=0.05, busy_timeout_ms=20
    )
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await store.insert_snapshots([make_snapshot("a", int(clock.now) - 2 * DAY)])
        with caplog.at_level(logging.INFO):
            holder.execute("BEGIN EXCLUSIVE")
            # No event marks a purge attempt, so poll the supervised task's count, bounded.
            async with asyncio.timeout(10):
                while not [t for t in store.background_health() if t.failures_total >= 2]:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            holder.execute("ROLLBACK")
            async with asyncio.timeout(10):
                while await count(store, "a"):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        (purge,) = store.background_health()
        assert purge.name == "sqlite-retention-purge"
        assert purge.last_error == "StorageUnavailable: SQLite: database is locked"
        first = [r for r in caplog.records if r.getMessage() == "Background task failed; restarting it"]
        assert [getattr(r, "error", None) for r in first] == [purge.last_error]
        # A locked store is a fault of the world, not of the code: no traceback, and later failures
        # within the minute are counted rather than each logged.
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        holder.close()
        await store.close()


async def test_a_locked_database_is_reported_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "a.sqlite3")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock, busy_timeout_ms=50)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageUnavailable):
            await store.insert_snapshots([make_snapshot("a", int(clock.now) - 60)])
        # The ingest service's write check sees the same: the store cannot be written now.
        with pytest.raises(StorageUnavailable, match="database is locked"):
            await store.check_writable()
        holder.execute("ROLLBACK")
        await store.check_writable()
        # Once the lock is gone the same batch goes through: nothing was half-written.
        await store.insert_snapshots([make_snapshot("a", int(clock.now) - 60)])
        assert await count(store, "a") == 1
    finally:
        holder.close()
        await store.close()


async def test_an_unopenable_path_is_reported_unavailable(tmp_path: Path) -> None:
    directory_in_the_way = tmp_path / "is-a-directory"
    directory_in_the_way.mkdir()
    with pytest.raises(StorageUnavailable):
        await SqliteSnapshotStore.open(str(directory_in_the_way), retention_days=90)


async def test_a_purge_inside_an_hour_recounts_that_hour(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000)  # any whole minute; this store's purge follows this clock only
    store = await SqliteSnapshotStore.open(str(tmp_path / "a.sqlite3"), retention_days=1, clock=clock)
    try:
        hour = int(clock.now) // 3600 * 3600 - DAY - 3600
        await store.insert_snapshots(
            [make_snapshot("a", hour + 60 * m, peak_viewers=100 if m < 30 else 9) for m in range(120)]
        )
        clock.now = hour + DAY + 30 * 60  # the cutoff falls at minute 30 of the first hour
        assert await store.purge_expired() == 30
        first, second = await store.query_points(AnalyticsRange("a", None, None), 3600)
        assert (first.bucket_start, first.sample_count, first.peak_viewers) == (hour, 30 * 12, 9)
        assert second.sample_count == 60 * 12
        assert (await store.query_totals(AnalyticsRange("a", None, None))).snapshot_count == 90
    finally:
        await store.close()


async def test_rollups_are_built_for_a_database_written_before_them(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "a.sqlite3")
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    hour = int(clock.now) // 3600 * 3600 - 7200
    await store.insert_snapshots([make_snapshot("a", hour + 60 * m) for m in range(90)])
    await store.close()
    with sqlite3.connect(path) as older_version:
        older_version.execute("DROP TABLE viewer_hourly")

    reopened = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    try:
        points = await reopened.query_points(AnalyticsRange("a", None, None), 3600)
        assert [p.sample_count for p in points] == [60 * 12, 30 * 12]
    finally:
        await reopened.close()


async def test_a_database_written_before_samples_and_sketches_gains_their_columns(tmp_path: Path) -> None:
    """A file from before the samples and sketches columns: its rows read with none, new rows store them."""
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE viewer_snapshots (
            auction_id TEXT NOT NULL, minute_start INTEGER NOT NULL, viewer_count INTEGER NOT NULL,
            avg_viewers REAL NOT NULL, peak_viewers INTEGER NOT NULL, min_viewers INTEGER NOT NULL,
            sample_count INTEGER NOT NULL, unique_viewers INTEGER NOT NULL, partial INTEGER NOT NULL,
            gateway_id TEXT NOT NULL, stored_at REAL NOT NULL, PRIMARY KEY (auction_id, minute_start)
        ) WITHOUT ROWID;
        INSERT INTO viewer_snapshots VALUES ('a-1', 1700000040, 5, 6.0, 9, 3, 12, 4, 0, 'gw', 0);
        """
    )
    old.close()
    clock = FakeClock(1_700_000_400)
    store = await SqliteSnapshotStore.open(str(path), retention_days=90, clock=clock)
    events = await SqliteAuctionEventStore.open(store, retention_days=90, clock=clock)
    try:
        samples = (3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9)
        await store.insert_snapshots([make_snapshot("a-1", 1_700_000_100, samples=samples)])
        details = await events.snapshot_details(AnalyticsRange("a-1", None, None))
        assert [(d.minute_start, d.samples) for d in details] == [
            (1_700_000_040, ()),
            (1_700_000_100, samples),
        ]
    finally:
        await events.close()
        await store.close()


async def test_events_stored_before_the_kept_lot_and_bidder_figures_gain_them_on_open(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A file whose events were written by a version that kept no per-lot or per-bidder figures."""
    path = str(tmp_path / "a.sqlite3")
    start = int(clock.now) - 3600
    written = sorted(lots(start), key=lambda e: (e.occurred_at, e.event_id))
    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    events = await SqliteAuctionEventStore.open(store, retention_days=90, clock=clock)
    await events.insert_events(written)
    await events.close()
    await store.close()
    with sqlite3.connect(path) as older_version:
        older_version.execute("DROP TABLE auction_lots")
        older_version.execute("DROP TABLE auction_bidders")

    store = await SqliteSnapshotStore.open(path, retention_days=90, clock=clock)
    events = await SqliteAuctionEventStore.open(store, retention_days=90, clock=clock)
    try:
        assert await events.lot_facts("a-1", None) == audience.lot_facts(written)
        plain = audience.funnel(written, SketchMerger().result())
        assert await events.funnel_counts(AnalyticsRange("a-1", None, None)) == FunnelCounts(
            plain.bidders, plain.bids, plain.lots_sold, plain.winners
        )
        kept = await store.run(lambda c: c.execute("SELECT COUNT(*) FROM auction_bidders").fetchone()[0])
        assert kept == len({e.bidder_id for e in written if e.kind is EventKind.BID_PLACED})
    finally:
        await events.close()
        await store.close()
