"""The gateway benchmark's machinery on a tiny load, so that it cannot rot unnoticed (not a benchmark)."""

from __future__ import annotations

from pathlib import Path

from bench.gateway_bench import gateway_server, measure_fanout


async def test_fanout_measurement_counts_every_delivered_update(tmp_path: Path) -> None:
    async with gateway_server(10, tmp_path) as server:
        result = await measure_fanout(server, sockets=20, rounds=4)
    assert result["delivered"] == 20 * 4
    assert result["server_cpu_s"] >= 0
