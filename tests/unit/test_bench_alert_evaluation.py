"""The alert evaluation benchmark's code path on a tiny size, so that it cannot rot between runs.

Not a benchmark: nothing here is compared with a goal.
"""

from __future__ import annotations

from bench.alert_evaluation import run


async def test_the_benchmark_runs_and_its_walk_makes_rules_fire() -> None:
    result = await run(auctions=20, per_auction=4, changes=4_000, rounds=2, seed=1)
    assert (result.auctions, result.rules, result.changes, result.rounds) == (20, 80, 4_000, 2)
    assert result.with_alerts_ns_per_change > 0
    assert result.feed_only_ns_per_change > 0
    assert result.rules_memory_bytes > 0
    # 200 changes per auction walk the counts past the thresholds: the rules are really evaluated.
    assert result.firings > 0
