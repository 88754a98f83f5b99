"""AUTO's bucket widths follow the deployment's snapshot interval (the dashboard's chart buckets)."""

from __future__ import annotations

import pytest

from graphql_api.analytics import AUTO_BUCKET_LADDER, auto_bucket_seconds, auto_ladder


def test_the_default_minute_keeps_the_ladder() -> None:
    assert auto_ladder(60) == AUTO_BUCKET_LADDER


@pytest.mark.parametrize("interval", [2, 10, 120])
def test_a_changed_interval_comes_first_and_every_width_is_a_multiple_of_it(interval: int) -> None:
    ladder = auto_ladder(interval)
    assert ladder[0] == interval
    assert all(width % interval == 0 for width in ladder)
    assert list(ladder) == sorted(set(ladder))


def test_an_hour_of_ten_second_snapshots_is_charted_at_ten_seconds() -> None:
    # 360 buckets: under AUTO's 500, so the demo's interval is the width (a minute before).
    assert auto_bucket_seconds(0, 3600, auto_ladder(10)) == 10
    assert auto_bucket_seconds(0, 3600) == 60
    # 1,800 two-second buckets are too many: a minute, as before.
    assert auto_bucket_seconds(0, 3600, auto_ladder(2)) == 60
