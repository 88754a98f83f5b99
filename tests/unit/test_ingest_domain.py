"""Pure ingest logic: the summary, the point bound, and the flag cache's freshness and size."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from ingest_service.analytics_flags import AnalyticsFlagCache
from ingest_service.domain import AnalyticsSummary, AuctionSettings, RangeTotals
from ingest_service.grpc_api.conversions import timestamp_of
from ingest_service.grpc_api.viewer_analytics import point_bound
from tests.support import FakeClock


def test_summary_spans_from_the_first_start_to_the_last_end() -> None:
    totals = RangeTotals(
        snapshot_count=3,
        peak_viewers=40,
        weighted_viewer_sum=300.0,
        sample_total=30,
        first_minute=0,
        last_minute=600,
    )
    summary = AnalyticsSummary.from_totals(totals, snapshot_interval_seconds=60)
    assert summary.duration_minutes == 11.0
    assert summary.overall_avg == 10.0
    assert (summary.overall_peak, summary.snapshot_count, summary.first_at, summary.last_at) == (
        40,
        3,
        0,
        600,
    )


def test_summary_of_nothing_is_zero() -> None:
    assert AnalyticsSummary.from_totals(RangeTotals.empty(), 60) == AnalyticsSummary(
        0, 0.0, 0.0, None, None, 0
    )


@pytest.mark.parametrize(
    ("first", "last", "count", "bucket", "bound"),
    [
        (0, 3540, 60, 0, 60),  # raw: one point per snapshot
        (0, 3540, 60, 3600, 1),
        (1800, 5340, 60, 3600, 2),  # straddles an hour boundary
        (0, 86_400 * 90, 5, 60, 5),  # sparse data: never more points than snapshots
    ],
)
def test_point_bound(first: int, last: int, count: int, bucket: int, bound: int) -> None:
    totals = RangeTotals(count, 1, 1.0, count, first, last)
    assert point_bound(totals, bucket) == bound


class CountingStore:
    """A settings lookup that counts its calls: the cache's own logic is under test, not a store's."""

    def __init__(self, enabled: set[str]) -> None:
        self.enabled = enabled
        self.lookups: list[list[str]] = []

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]:
        self.lookups.append(sorted(auction_ids))
        return {a: AuctionSettings(a, True, 0.0) for a in auction_ids if a in self.enabled}


async def test_flags_are_looked_up_once_then_cached_until_they_age() -> None:
    store = CountingStore({"on"})
    clock = FakeClock(1000.0)
    cache = AnalyticsFlagCache(store, max_age_seconds=30, clock=clock)
    assert await cache.enabled_auctions({"on", "off"}) == {"on"}
    assert await cache.enabled_auctions({"on", "off"}) == {"on"}
    assert store.lookups == [["off", "on"]]

    clock.advance(31)
    store.enabled = set()
    assert await cache.enabled_auctions({"on"}) == set()
    assert store.lookups[-1] == ["on"]


async def test_without_an_age_every_lookup_reads_the_store() -> None:
    # The default: replicas agree because none of them keeps a flag between batches.
    store = CountingStore({"on"})
    cache = AnalyticsFlagCache(store, max_age_seconds=0, clock=FakeClock(1000.0))
    assert await cache.enabled_auctions({"on", "off"}) == {"on"}
    cache.remember(AuctionSettings("off", True, 1000.0))
    store.enabled = {"off"}
    assert await cache.enabled_auctions({"on", "off"}) == {"off"}
    assert store.lookups == [["off", "on"], ["off", "on"]]


async def test_a_flag_written_here_is_seen_at_once() -> None:
    store = CountingStore(set())
    cache = AnalyticsFlagCache(store, max_age_seconds=3600, clock=FakeClock(0.0))
    assert await cache.enabled_auctions({"a"}) == set()
    cache.remember(AuctionSettings("a", True, 0.0))
    assert await cache.enabled_auctions({"a"}) == {"a"}
    assert len(store.lookups) == 1


async def test_the_cache_is_bounded() -> None:
    store = CountingStore(set())
    cache = AnalyticsFlagCache(store, max_age_seconds=3600, clock=FakeClock(0.0), max_entries=2)
    for auction in ("a", "b", "c"):
        await cache.enabled_auctions({auction})
    await cache.enabled_auctions({"a"})  # evicted as the least recent, so looked up again
    await cache.enabled_auctions({"c"})  # still cached
    assert store.lookups == [["a"], ["b"], ["c"], ["a"]]


@pytest.mark.parametrize(
    ("epoch_seconds", "seconds", "nanos"),
    [
        (0.0, 0, 0),
        (1.5, 1, 500_000_000),
        (1000.9999999996, 1001, 0),
        (1_795_692_300.25, 1_795_692_300, 250_000_000),
    ],
)
def test_timestamps_carry_a_rounded_fraction_into_the_seconds(
    epoch_seconds: float, seconds: int, nanos: int
) -> None:
    stamp = timestamp_of(epoch_seconds)
    assert (stamp.seconds, stamp.nanos) == (seconds, nanos)
