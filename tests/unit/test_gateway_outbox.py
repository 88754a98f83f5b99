"""The outbox: FIFO, survives reopening, bounded by its cap, removes only what it is told, rides out a
file it cannot write, and belongs to one process."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from pathlib import Path

import pytest

from service_common.config import ConfigError
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.snapshots.aggregation import MinuteSnapshot
from socket_gateway.snapshots.outbox import Outbox, OutboxUnwritable

T0 = 1_800_000_000


def snapshot(auction_id: str, minute: int, **changes: object) -> MinuteSnapshot:
    base = MinuteSnapshot(auction_id, T0 + 60 * minute, 5, 6.5, 9, 3, 12, 4, False, "gw")
    return replace(base, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def opened(path: Path, cap: int = 100, metrics: GatewayMetrics | None = None) -> AsyncIterator[Outbox]:
    outbox = await Outbox.open(str(path), cap, metrics or GatewayMetrics(), busy_timeout_seconds=0.05)
    try:
        yield outbox
    finally:
        await outbox.close()


async def put(outbox: Outbox, snapshots: list[MinuteSnapshot]) -> int:
    """Offers ``snapshots`` and writes them; returns how many the offer took."""
    taken = outbox.offer(snapshots)
    await outbox.write_pending()
    return taken


async def test_queued_snapshots_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "outbox.sqlite3"
    queued = [snapshot("a1", 0), snapshot("a2", 0, partial=True, avg_viewers=1.25)]
    async with opened(path) as outbox:
        assert await put(outbox, queued) == 2

    async with opened(path) as reopened:
        assert reopened.depth == 2
        assert [entry.snapshot for entry in await reopened.peek(10)] == queued


async def test_what_is_only_in_memory_at_close_is_written_before_the_file_closes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with opened(path) as outbox:
        outbox.offer([snapshot("a1", 0)])
        assert outbox.pending == 1
    async with opened(path) as reopened:
        assert [entry.snapshot.auction_id for entry in await reopened.peek(10)] == ["a1"]


async def test_peek_is_oldest_first_and_only_remove_takes_entries_out(tmp_path: Path) -> None:
    async with opened(tmp_path / "o.sqlite3") as outbox:
        await put(outbox, [snapshot("a1", minute) for minute in range(5)])
        first = await outbox.peek(2)
        assert [entry.snapshot.minute_start for entry in first] == [T0, T0 + 60]
        assert await outbox.peek(2) == first
        await outbox.remove([entry.entry_id for entry in first])
        assert outbox.depth == 3
        assert [entry.snapshot.minute_start for entry in await outbox.peek(10)] == [
            T0 + 120,
            T0 + 180,
            T0 + 240,
        ]


async def test_the_same_auction_and_minute_is_queued_once(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    async with opened(tmp_path / "o.sqlite3", metrics=metrics) as outbox:
        await put(outbox, [snapshot("a1", 0)])
        await put(outbox, [snapshot("a1", 0, viewer_count=7)])
        assert outbox.depth == 1
        assert (await outbox.peek(1))[0].snapshot.viewer_count == 5
        assert metrics.snapshots_enqueued_total == 1


async def test_at_the_cap_the_newest_are_dropped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()
    async with opened(tmp_path / "o.sqlite3", cap=3, metrics=metrics) as outbox:
        assert await put(outbox, [snapshot("a1", minute) for minute in range(5)]) == 3
        assert outbox.full
        assert metrics.outbox_dropped_total == 2
        assert any(record.getMessage() == "Outbox full; snapshots dropped" for record in caplog.records)
        assert [entry.snapshot.minute_start for entry in await outbox.peek(10)] == [T0, T0 + 60, T0 + 120]
        await outbox.remove([(await outbox.peek(1))[0].entry_id])
        assert not outbox.full


async def test_waiters_see_items_arrive_and_the_outbox_drain(tmp_path: Path) -> None:
    async with opened(tmp_path / "o.sqlite3") as outbox:
        await outbox.wait_until_empty()
        await put(outbox, [snapshot("a1", 0)])
        await outbox.wait_for_items()
        await outbox.remove([(await outbox.peek(1))[0].entry_id])
        await outbox.wait_until_empty()


async def test_a_file_that_cannot_be_written_keeps_the_snapshots_in_memory_until_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the file's write lock (what a full disk does too: every write fails)."""
    path = tmp_path / "o.sqlite3"
    metrics = GatewayMetrics()
    async with opened(path, cap=10, metrics=metrics) as outbox:
        with closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            outbox.offer([snapshot("a1", 0), snapshot("a1", 1)])
            for _attempt in range(2):
                with pytest.raises(OutboxUnwritable, match="database is locked"):
                    await outbox.write_pending()
            assert outbox.write_error == "database is locked"
            assert (outbox.pending, outbox.depth) == (2, 2)
            assert await outbox.peek(10) == [], "nothing is sent before it is on disk"
            # Bounded while it waits: the cap counts what is in memory.
            assert outbox.offer([snapshot("a1", minute) for minute in range(2, 20)]) == 8
            assert outbox.full
            holder.execute("ROLLBACK")
        await outbox.write_pending()
        assert outbox.write_error is None
        assert (outbox.pending, outbox.depth) == (0, 10)
        assert [entry.snapshot.minute_start for entry in await outbox.peek(20)] == [
            T0 + 60 * minute for minute in range(10)
        ]
        assert metrics.outbox_write_failures_total == 2
        assert metrics.outbox_dropped_total == 10
    failures = [
        r for r in caplog.records if r.getMessage() == "Outbox write failed; keeping snapshots in memory"
    ]
    assert len(failures) == 1, "logged once per outage, with its cause"


async def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    async with opened(path):
        with pytest.raises(ConfigError, match=r"OUTBOX_PATH.*in use by another gateway process"):
            await Outbox.open(str(path), 10, GatewayMetrics())
    async with opened(path):
        pass


# Written by the gateway's own Outbox as it stood before it kept serialized messages (6eea2ea), one
# column per field: a1, a2, a1+1, a3+1 offered at T0 and T0 + 60, the first one acknowledged (removed).
PER_FIELD_FILE = Path(__file__).parent.parent / "fixtures" / "outbox_per_field.sqlite3"
PER_FIELD_QUEUE = [
    MinuteSnapshot("a2", T0, 2, 1.25, 3, 0, 12, 2, False, "gw-old"),
    MinuteSnapshot("a1", T0 + 60, 7, 7.0, 7, 7, 3, 6, True, "gw-old"),
    MinuteSnapshot("a3", T0 + 60, 1, 1.0, 1, 1, 12, 1, False, "gw-old"),
]


async def test_an_outbox_file_of_the_per_field_version_keeps_its_queue_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    shutil.copyfile(PER_FIELD_FILE, path)
    async with opened(path) as outbox:
        assert outbox.depth == 3
        assert [entry.snapshot for entry in await outbox.peek(10)] == PER_FIELD_QUEUE
        # Still one snapshot per auction-minute, and what comes now queues behind what was there.
        assert await put(outbox, [snapshot("a2", 0, viewer_count=9), snapshot("a4", 2)]) == 2
        assert outbox.depth == 4
        await outbox.remove([(await outbox.peek(1))[0].entry_id])
    async with opened(path) as reopened:
        assert [entry.snapshot for entry in await reopened.peek(10)] == [
            *PER_FIELD_QUEUE[1:],
            snapshot("a4", 2),
        ]
