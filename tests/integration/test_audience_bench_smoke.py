"""The auction-audience benchmark's code path, on a tiny size, so that it cannot rot between measurements.

Not a benchmark: nothing here is compared with a goal. It starts the real ingest service as a child
process, as ``python -m bench.auction_audience`` does; the run itself fails unless every snapshot
and event is acknowledged STORED.
"""

from __future__ import annotations

from bench.auction_audience import Options, report, run


async def test_the_benchmark_runs_and_reports_every_figure() -> None:
    options = Options(hours=1, lots=4, viewers=300, bids=40, other_auctions=1, batch=10, queries=2)
    result = await run(options)
    assert (result.snapshots, result.events) == (120, 4 * 2 + 40 + 2)
    assert result.lots_answered == 4
    assert all(len(values) == 2 for values in result.latencies.values())
    assert 0 < result.bytes_per_snapshot <= result.max_bytes_per_snapshot
    text = report(options, result)
    for figure in (
        "snapshots, batches of 500",
        "events, batches of 10",
        "per-lot",
        "funnel",
        "storage added",
    ):
        assert figure in text
