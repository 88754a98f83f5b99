"""The ingest benchmark's code path, on a tiny size, so that it cannot rot between measurements.

Not a benchmark: nothing here is timed or compared with a goal. It starts the real ingest service
as a child process (unpinned), as ``python -m bench.ingest_throughput`` does.
"""

from __future__ import annotations

from bench.ingest_throughput import BenchOptions, machine_facts, run_benchmark, summarize


async def test_every_workload_runs_and_is_reported() -> None:
    options = BenchOptions(
        repetitions=1,
        single_snapshots=3,
        batched_snapshots=10,
        batch_size=4,
        load_snapshots=9,
        mongodb_uri=None,
        server_cpu=None,
        client_cpu=None,
        quiet_wait_seconds=0,
    )

    # run_benchmark itself fails unless every snapshot is acknowledged STORED.
    measurements = await run_benchmark(options)

    assert [(run.backend, run.batch_size, run.snapshots) for run in measurements] == [
        ("sqlite", 1, 3),
        ("sqlite", 4, 10),
        ("sqlite", 4, 9),
    ]
    assert all(run.seconds > 0 and run.per_second > 0 for run in measurements)
    report = summarize(options, measurements)
    assert "batches of 4 vs batches of 1, same repetition" in report
    assert "9 minutes of one auction, batches of 4" in report
    assert "SQLite" in machine_facts("0123abcd")
