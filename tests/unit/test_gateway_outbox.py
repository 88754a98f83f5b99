"""The outbox: FIFO, survives reopening, bounded by its cap, removes only what it is told."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from socket_gateway.aggregation import MinuteSnapshot
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.outbox import Outbox

T0 = 1_800_000_000


def snapshot(auction_id: str, minute: int, **changes: object) -> MinuteSnapshot:
    base = MinuteSnapshot(auction_id, T0 + 60 * minute, 5, 6.5, 9, 3, 12, 4, False, "gw")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_queued_snapshots_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "outbox.sqlite3")
    outbox = Outbox.open(path, 100, GatewayMetrics())
    queued = [snapshot("a1", 0), snapshot("a2", 0, partial=True, avg_viewers=1.25)]
    assert outbox.put(queued) == 2
    outbox.close()

    reopened = Outbox.open(path, 100, GatewayMetrics())
    assert reopened.depth == 2
    assert [entry.snapshot for entry in reopened.peek(10)] == queued
    reopened.close()


def test_peek_is_oldest_first_and_only_remove_takes_entries_out(tmp_path: Path) -> None:
    outbox = Outbox.open(str(tmp_path / "o.sqlite3"), 100, GatewayMetrics())
    outbox.put([snapshot("a1", minute) for minute in range(5)])
    first = outbox.peek(2)
    assert [entry.snapshot.minute_start for entry in first] == [T0, T0 + 60]
    assert outbox.peek(2) == first
    outbox.remove([entry.entry_id for entry in first])
    assert outbox.depth == 3
    assert [entry.snapshot.minute_start for entry in outbox.peek(10)] == [T0 + 120, T0 + 180, T0 + 240]
    outbox.close()


def test_the_same_auction_and_minute_is_queued_once(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    outbox = Outbox.open(str(tmp_path / "o.sqlite3"), 100, metrics)
    assert outbox.put([snapshot("a1", 0)]) == 1
    assert outbox.put([snapshot("a1", 0, viewer_count=7)]) == 0
    assert outbox.depth == 1
    assert outbox.peek(1)[0].snapshot.viewer_count == 5
    assert metrics.snapshots_enqueued_total == 1
    outbox.close()


def test_at_the_cap_the_newest_are_dropped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()
    outbox = Outbox.open(str(tmp_path / "o.sqlite3"), 3, metrics)
    assert outbox.put([snapshot("a1", minute) for minute in range(5)]) == 3
    assert outbox.full
    assert metrics.outbox_dropped_total == 2
    assert any(record.getMessage() == "Outbox full; snapshots dropped" for record in caplog.records)
    assert [entry.snapshot.minute_start for entry in outbox.peek(10)] == [T0, T0 + 60, T0 + 120]
    outbox.remove([outbox.peek(1)[0].entry_id])
    assert not outbox.full
    outbox.close()


async def test_waiters_see_items_arrive_and_the_outbox_drain(tmp_path: Path) -> None:
    outbox = Outbox.open(str(tmp_path / "o.sqlite3"), 10, GatewayMetrics())
    await outbox.wait_until_empty()
    outbox.put([snapshot("a1", 0)])
    await outbox.wait_for_items()
    outbox.remove([outbox.peek(1)[0].entry_id])
    await outbox.wait_until_empty()
    outbox.close()
