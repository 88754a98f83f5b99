"""Unique viewers over a long range on the SQLite store: the hourly sketch rollups' read cost.

Run from the repository root (figures: docs/ingest_service.md, "Unique viewers over a range")::

    .venv/bin/python -m bench.unique_viewers_range            # 90 days
    .venv/bin/python -m bench.unique_viewers_range --days 7

Stores ``--days`` of one auction in a fresh SQLite file in a temporary directory: two minutes an hour
carrying sketches of 3,000 identified and 5,000 anonymous viewers (about 1.2 KB each, as a busy room's
hour rollup is), then times ``query_unique_viewers`` and ``query_totals`` over the range, which starts
half an hour into the first hour (so both partial-hour paths run), and prints the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import datasketches

from ingest_service.domain import AnalyticsRange, Snapshot
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from testkit.seeding import make_snapshot

HOUR = 3600


def cpc(first: int, count: int, prefix: str) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for number in range(first, first + count):
        sketch.update(f"{prefix}{number}")
    return bytes(sketch.serialize())


async def run(days: int, repetitions: int) -> None:
    now = int(time.time()) // HOUR * HOUR
    start = now - days * 86_400
    sketches = [(cpc(i * 37, 3000, "sub-"), cpc(i * 53, 5000, "anon-")) for i in range(50)]
    with tempfile.TemporaryDirectory() as directory:
        store = await SqliteSnapshotStore.open(
            str(Path(directory) / "bench.sqlite3"), retention_days=days + 1, clock=lambda: float(now)
        )
        try:
            batch: list[Snapshot] = []
            for hour in range(days * 24):
                for offset in (0, 30):
                    identified, anonymous = sketches[(hour * 2 + offset) % 50]
                    batch.append(
                        make_snapshot(
                            "bench",
                            start + hour * HOUR + offset * 60,
                            gateway_id="bench",
                            identified_sketch=identified,
                            anonymous_sketch=anonymous,
                        )
                    )
                if len(batch) >= 500:
                    await store.insert_snapshots(batch)
                    batch = []
            await store.insert_snapshots(batch)
            query = AnalyticsRange("bench", start + 1800, now)
            await store.query_unique_viewers(query)
            unique_times, totals_times = [], []
            for _ in range(repetitions):
                began = time.perf_counter()
                unique = await store.query_unique_viewers(query)
                unique_times.append(time.perf_counter() - began)
                began = time.perf_counter()
                await store.query_totals(query)
                totals_times.append(time.perf_counter() - began)
        finally:
            await store.close()
    print(
        f"{days} days: query_unique_viewers median {statistics.median(unique_times) * 1000:.1f} ms "
        f"({unique.sketched_snapshots} sketched snapshots, estimate {unique.estimate:.0f}); "
        f"query_totals median {statistics.median(totals_times) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repetitions", type=int, default=10)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.days, arguments.repetitions))


if __name__ == "__main__":
    main()
