"""bench.snapshot_storage's code path on small rooms, so that it cannot rot between measurements.

Not a benchmark: nothing here is compared with a goal. The run itself fails if the ingest service's
rules would refuse a snapshot the gateway's code made.
"""

from __future__ import annotations

import pytest

from bench.snapshot_storage import report, rooms, run


async def test_the_benchmark_stores_each_rooms_minute_and_reports_it() -> None:
    figures = await run(largest=100)
    assert [figure.room.name for figure in figures] == [room.name for room in rooms(100)]
    for figure in figures:
        assert figure.samples_bytes == 12 * 4
        assert figure.sketch_bytes > 0
        # The distinct viewers of the minute, within the sketch's error at these sizes.
        assert figure.sketch_estimate == pytest.approx(figure.room.distinct, rel=0.05)
    assert "largest stored addition" in report(figures)
