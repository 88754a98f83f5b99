"""The cluster scale benchmark's code path (bench/cluster_scale.py), on its small size, so that it
cannot rot between measurements.

Not a benchmark: nothing here is timed or compared with a goal. It runs the simulated nodes on a real
redis-server, as ``python -m bench.cluster_scale --small`` does.
"""

from __future__ import annotations

from bench.cluster_scale import parse, run
from tests.redis_support import redis_server_binary


async def test_the_small_run_goes_through_every_phase_and_reports_redis_figures() -> None:
    redis_server_binary()
    result = await run(parse(["--small"]))
    assert result["design"] == "new"
    assert result["room_node_pairs"] > 0
    assert result["redis_memory_mb"] > 0
    assert result["churn_events"] > 0
    assert result["commands_per_event"] > 0
    assert 0 < result["round_trips_per_event"] <= 1
    # Redis's own latency tracking of the scripts, and the dead node's rooms reaped to the last.
    assert set(result["steady_evalsha_ms"]) == {"p99", "p99.9", "p100"}
    assert result["dead_node_rooms"] > 0
    assert result["reap_seconds"] > 0
