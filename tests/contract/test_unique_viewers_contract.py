"""Unique viewers over a range (SnapshotStore.query_unique_viewers), on every backend.

The oracle merges every raw snapshot's sketches of the range one by one (SketchMerger.add): the
stores answer from per-hour merged sketches for whole hours and from the minutes at the ends, and a
CPC union does not depend on how its inputs are grouped, so both must agree exactly.
"""

from __future__ import annotations

import datasketches
import pytest

from ingest_service.domain import AnalyticsRange, Snapshot, SnapshotOutcome
from ingest_service.sketches import SketchMerger, UniqueViewerCount
from tests.contract.conftest import Backend
from tests.support import make_snapshot

HOUR = 3600
STORED, DUPLICATE = SnapshotOutcome.STORED, SnapshotOutcome.DUPLICATE


def cpc(numbers: range, prefix: str) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for number in numbers:
        sketch.update(f"{prefix}{number}")
    return bytes(sketch.serialize())


def sketched(auction_id: str, minute_start: int, index: int) -> Snapshot:
    """Minute ``index``'s viewers: a window of identified and anonymous ids sliding with the minute.

    Every fifth minute has only identified viewers, every seventh only anonymous ones; every
    eleventh carries no sketch at all (an older gateway's), so ranges mix the two.
    """
    if index % 11 == 0:
        return make_snapshot(auction_id, minute_start)
    identified = b"" if index % 7 == 0 else cpc(range(index * 20, index * 20 + 150), "sub-")
    anonymous = b"" if index % 5 == 0 else cpc(range(index * 30, index * 30 + 200), "anon-")
    return make_snapshot(auction_id, minute_start, identified_sketch=identified, anonymous_sketch=anonymous)


def oracle(snapshots: list[Snapshot], start: int | None, end: int | None) -> UniqueViewerCount:
    merger = SketchMerger()
    for s in snapshots:
        if (start is None or s.minute_start >= start) and (end is None or s.minute_start < end):
            merger.add(s.identified_sketch, s.anonymous_sketch)
    return merger.result()


def three_hours(backend: Backend, auction_id: str) -> tuple[int, list[Snapshot]]:
    """Minutes from 20 minutes into an hour to 40 minutes into the hour three later."""
    hour = int(backend.clock.now) // HOUR * HOUR - 4 * HOUR
    first = hour + 20 * 60
    return hour, [sketched(auction_id, first + 60 * index, index) for index in range(200)]


async def test_unique_viewers_of_any_range_agree_with_merging_every_minute(backend: Backend) -> None:
    hour, snapshots = three_hours(backend, "a-1")
    for at in range(0, len(snapshots), 37):  # batches that cut across hours
        await backend.store.insert_snapshots(snapshots[at : at + 37])
    await backend.store.insert_snapshots([sketched("other", hour + 1800, 3)])

    ranges = [
        (None, None),
        (hour, hour + 4 * HOUR),  # whole hours only, the first and last partly filled
        (hour + 1800, hour + 3 * HOUR + 600),  # partial hours at both ends
        (hour + HOUR, hour + 2 * HOUR),  # one whole hour
        (hour + HOUR + 60, hour + HOUR + 600),  # inside one hour
        (hour + 2 * HOUR + 1, None),
        (None, hour + 2 * HOUR - 1),
    ]
    for start, end in ranges:
        answer = await backend.store.query_unique_viewers(AnalyticsRange("a-1", start, end))
        assert answer == oracle(snapshots, start, end), (start, end)

    everything = await backend.store.query_unique_viewers(AnalyticsRange("a-1", None, None))
    # 200 minutes: 24 without a sketch (every eleventh, and every 35th with both sketches empty);
    # each viewer counted once across minutes.
    assert (everything.sketched_snapshots, everything.unsketched_snapshots) == (176, 24)
    assert everything.identified_estimate == pytest.approx(199 * 20 + 150, rel=0.05)
    assert everything.anonymous_estimate == pytest.approx(199 * 30 + 200, rel=0.05)


async def test_a_range_without_sketches_has_no_sketched_snapshot(backend: Backend) -> None:
    """The seed's documents and older gateways: counted as unsketched, never as zero viewers seen."""
    start = int(backend.clock.now) // HOUR * HOUR - 3 * HOUR
    await backend.store.insert_snapshots([make_snapshot("plain", start + 60 * i) for i in range(150)])
    answer = await backend.store.query_unique_viewers(AnalyticsRange("plain", None, None))
    assert (answer.sketched_snapshots, answer.unsketched_snapshots, answer.estimate) == (0, 150, 0.0)
    empty = await backend.store.query_unique_viewers(AnalyticsRange("nobody", None, None))
    assert (empty.sketched_snapshots, empty.unsketched_snapshots, empty.estimate) == (0, 0, 0.0)


async def test_resent_and_repeated_minutes_count_once_and_the_first_write_wins(backend: Backend) -> None:
    hour, snapshots = three_hours(backend, "a-1")
    batch = snapshots[:90]
    assert await backend.store.insert_snapshots(batch) == [STORED] * 90
    assert await backend.store.insert_snapshots(batch) == [DUPLICATE] * 90
    # Another sketch for a stored minute, and a minute repeated inside one batch: the first one counts.
    other = cpc(range(100_000, 101_000), "sub-")
    again = [
        make_snapshot("a-1", snapshots[5].minute_start, identified_sketch=other),
        snapshots[90],
        make_snapshot("a-1", snapshots[90].minute_start, identified_sketch=other),
    ]
    assert await backend.store.insert_snapshots(again) == [DUPLICATE, STORED, DUPLICATE]
    stored = snapshots[:91]
    for start, end in [(None, None), (hour, hour + 3 * HOUR), (hour + HOUR, hour + 2 * HOUR)]:
        answer = await backend.store.query_unique_viewers(AnalyticsRange("a-1", start, end))
        assert answer == oracle(stored, start, end), (start, end)


async def test_unique_viewers_of_expired_hours_go_with_their_minutes(backend: Backend) -> None:
    old = int(backend.clock.now) // HOUR * HOUR - 2 * HOUR
    snapshots = [sketched("a-1", old + 60 * index, index + 1) for index in range(10)]
    await backend.store.insert_snapshots(snapshots)
    before = await backend.store.query_unique_viewers(AnalyticsRange("a-1", None, None))
    assert before == oracle(snapshots, None, None)
    # The retention's cutoff moved five minutes into the hour: its first five minutes expire.
    cutoff = old + 300
    backend.clock.advance(cutoff + 90 * 86_400 - backend.clock.now)
    if backend.name == "sqlite":
        await backend.expire("a-1")
        answer = await backend.store.query_unique_viewers(AnalyticsRange("a-1", None, None))
        assert answer == oracle(snapshots, cutoff, None)
        assert answer.sketched_snapshots == sum(1 for s in snapshots if s.minute_start >= cutoff)
    else:
        # MongoDB's TTL monitor runs on the server's clock; the hour the cutoff cuts into is read
        # from its minutes (not its rollup), which is what the TTL leaves. The minutes are all still
        # there, so the answer is the whole hour's.
        answer = await backend.store.query_unique_viewers(AnalyticsRange("a-1", None, None))
        assert answer == oracle(snapshots, None, None)
