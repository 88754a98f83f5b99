"""The storage that samples and sketches add to a snapshot, as the gateway makes them (issue 17's <= 2 KB).

Run from the repository root (figures and their meaning: docs/benchmarks.md, "Snapshot storage")::

    .venv/bin/python -m bench.snapshot_storage
    .venv/bin/python -m bench.snapshot_storage --largest 10000    # a quicker look

For each room below, one minute goes through the gateway's own code, without sockets (they change
nothing in the bytes): sockets join a real ``RoomRegistry`` with the viewer ids a gateway would give
them, ``SeenViewers`` sketches them as the gateway does (identified with viewer tokens; claimed ids
and id-less sockets as anonymous without), and ``SnapshotAggregator`` takes the minute's 12 samples
and closes it. The snapshot is checked by the ingest service's own rules (``SnapshotRules``), stored
by its SQLite store in a fresh file, and the bytes its samples and sketch columns hold are read back,
with the hourly sketch rollup's and the wire message's growth. Rooms: everyone present all minute, at
10 to ``--largest`` viewers, with and without viewer tokens; and churn, ``WATCHING`` at once and ten
times as many distinct over the minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from ingest_service.validation import SnapshotRules
from service_common.timing import SnapshotTiming
from service_common.viewer_snapshot import Snapshot, to_wire
from socket_gateway.live.rooms import RoomRegistry
from socket_gateway.snapshots.aggregation import SampleSchedule, SnapshotAggregator
from socket_gateway.snapshots.seen_viewers import SeenViewers

TIMING = SnapshotTiming(60, 5)
WATCHING = 1500
GOAL_BYTES = 2048


@dataclass(frozen=True)
class Room:
    name: str
    present: int  # sockets in the room all minute
    distinct: int  # distinct viewers over the minute (more than present: churn)
    tokens: bool  # viewer tokens on: every viewer identified


@dataclass(frozen=True)
class Figure:
    room: Room
    sketch_estimate: float
    stored_bytes: int  # samples + both sketch columns of the stored snapshot
    samples_bytes: int
    sketch_bytes: int
    rollup_bytes: int  # its hour's sketch rollup (one per auction-hour; here the hour holds only it)
    wire_added: int  # the serialized ViewerSnapshot's growth from samples and sketches


def rooms(largest: int) -> list[Room]:
    sizes = [size for size in (10, 100, 1_000, 10_000, 100_000) if size <= largest]
    out = [Room(f"tokens-{size}", size, size, True) for size in sizes]
    out += [Room(f"open-{size}", size, size, False) for size in sizes]
    out.append(Room("churn-open", WATCHING, 10 * WATCHING, False))
    out.append(Room("churn-tokens", WATCHING, 10 * WATCHING, True))
    return out


def viewer_of(room: Room, number: int) -> str | None:
    """The viewer id a gateway holds for a socket: a token's sub, or a claimed id / none (half each)."""
    if room.tokens:
        return f"sub-{number:08d}"
    return f"viewer-{number:08d}" if number % 2 else None


def minute_of(room: Room, minute_start: int) -> Snapshot:
    """The room's minute through the gateway's registry, sketches and aggregator."""
    registry = RoomRegistry()
    aggregator = SnapshotAggregator(
        SampleSchedule(TIMING), "bench-gateway", SeenViewers(registry, verified_ids=room.tokens)
    )
    for number in range(room.present):
        registry.join(f"sid-{number}", room.name, viewer_of(room, number))
    # Churn: between ticks, the rest of the distinct viewers come and go, spread over the minute.
    visitors = list(range(room.present, room.distinct))
    per_tick = -(-len(visitors) // TIMING.max_samples_per_snapshot)
    closed: list[Snapshot] = []
    for tick in range(1, TIMING.max_samples_per_snapshot + 1):
        for number in visitors[(tick - 1) * per_tick : tick * per_tick]:
            registry.join(f"sid-{number}", room.name, viewer_of(room, number))
            registry.leave(f"sid-{number}")
        closed += aggregator.sample(
            minute_start + tick * TIMING.sample_interval_seconds, registry.active_rooms(), registry.counts
        )
    (snapshot,) = closed
    return snapshot


def column_bytes(path: Path, auction_id: str) -> tuple[int, int, int]:
    """The stored snapshot's samples and sketch bytes, and its hourly rollup's sketch bytes."""
    with sqlite3.connect(path) as connection:
        samples, sketches = connection.execute(
            "SELECT IFNULL(LENGTH(samples), 0), IFNULL(LENGTH(identified_sketch), 0) + "
            "IFNULL(LENGTH(anonymous_sketch), 0) FROM viewer_snapshots WHERE auction_id = ?",
            (auction_id,),
        ).fetchone()
        rollup = connection.execute(
            "SELECT TOTAL(IFNULL(LENGTH(identified_sketch), 0) + IFNULL(LENGTH(anonymous_sketch), 0)) "
            "FROM viewer_hourly_sketches WHERE auction_id = ?",
            (auction_id,),
        ).fetchone()[0]
    return int(samples), int(sketches), int(rollup)


async def run(largest: int) -> list[Figure]:
    import datasketches  # the ingest's library, to read the estimate back

    now = int(time.time()) // 60 * 60
    rules = SnapshotRules(TIMING.snapshot_interval_seconds, TIMING.max_samples_per_snapshot, 86_400)
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as directory:
        path = Path(directory) / "storage.sqlite3"
        store = await SqliteSnapshotStore.open(str(path), retention_days=1, clock=lambda: float(now))
        try:
            for index, room in enumerate(rooms(largest)):
                snapshot = minute_of(room, now - 3600 - 60 * index)
                problem = rules.problem(snapshot, now)
                if problem is not None:
                    raise RuntimeError(f"{room.name}: the ingest service would refuse it: {problem}")
                await store.insert_snapshots([snapshot])
                samples, sketches, rollup = column_bytes(path, room.name)
                bare = replace(snapshot, samples=(), identified_sketch=b"", anonymous_sketch=b"")
                raw = snapshot.identified_sketch or snapshot.anonymous_sketch
                estimate = datasketches.cpc_sketch.deserialize(raw).get_estimate() if raw else 0.0
                figures.append(
                    Figure(
                        room=room,
                        sketch_estimate=estimate,
                        stored_bytes=samples + sketches,
                        samples_bytes=samples,
                        sketch_bytes=sketches,
                        rollup_bytes=rollup,
                        wire_added=to_wire(snapshot).ByteSize() - to_wire(bare).ByteSize(),
                    )
                )
        finally:
            await store.close()
    return figures


def report(figures: Sequence[Figure]) -> str:
    lines = [
        "| room | present / distinct | viewer tokens | sketch estimate | stored: samples + sketch | "
        "its hour's rollup | wire growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in figures:
        room = figure.room
        lines.append(
            f"| {room.name} | {room.present:,} / {room.distinct:,} | {'on' if room.tokens else 'off'} "
            f"| {figure.sketch_estimate:,.0f} | **{figure.stored_bytes:,} B** "
            f"({figure.samples_bytes} + {figure.sketch_bytes:,}) | {figure.rollup_bytes:,} B "
            f"| {figure.wire_added:,} B |"
        )
    largest = max(figure.stored_bytes for figure in figures)
    verdict = "met" if largest <= GOAL_BYTES else "NOT met"
    lines += ["", f"largest stored addition {largest:,} B (goal <= {GOAL_BYTES:,} B: {verdict})"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--largest", type=int, default=100_000, help="the largest room present all minute")
    arguments = parser.parse_args(argv)
    print(report(asyncio.run(run(arguments.largest))))


if __name__ == "__main__":
    main()
