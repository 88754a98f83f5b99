"""The soak's code path for a few seconds, so that it cannot rot between long runs (not a measurement)."""

from __future__ import annotations

from bench.gateway_soak import soak


async def test_a_short_soak_runs_and_reports_its_series() -> None:
    result = await soak(duration=3.0, rate=5.0, rooms_count=2, steady_count=4, sample_every=1.0, pin=False)

    assert (result.operations, result.failures) == (15, 0), result.first_failures
    assert result.final_counts_exact
    assert result.room_members_metric == result.room_members_expected == 6
    assert len(result.samples) >= 4
    assert all(sample.rss_kib > 0 and sample.room_members >= 6 for sample in result.samples)
    assert result.rss_slope_second_half_kib_per_min is not None
    assert result.rss_start_kib == result.samples[0].rss_kib
