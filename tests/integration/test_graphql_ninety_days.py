"""90 days of one auction, seeded through the real ingest stream, read back through the GraphQL API.

The data follow a pattern whose sums can be worked out by hand. Minute ``i`` of the 129,600
(``i = 0`` at a UTC midnight) belongs to day ``k = i // 1440`` and has ``m = i % 60``:
min ``k + m``, average ``k + m + 1.5``, peak ``k + m + 3``, count at the minute's end ``k + m + 2``,
and 12 samples when ``m`` is even, 6 when odd (so averages must be weighted by samples to come out
right). Over a full hour: samples 30*12 + 30*6 = 540; sum of samples*m = 12*(0+2+...+58) +
6*(1+3+...+59) = 12*870 + 6*900 = 15,840, so the weighted mean of m is 15840/540 = 29.33...
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2

from testkit.seeding import NINETY_DAYS, seed_ninety_days
from tests.conftest import ingest_config, serving_ingest
from tests.graphql_support import (
    ANALYTICS_QUERY,
    RunningGraphQL,
    admin_token,
    graphql_config,
    running_graphql,
    seller_token,
)
from tests.support import FakeClock, IngestClient

AUCTION = "auction-90d"
MINUTES = NINETY_DAYS
HOUR_SAMPLES = 540
HOUR_MEAN_M = 15840 / 540
DAY = 86_400


@dataclass
class NinetyDays:
    api: RunningGraphQL
    ingest: IngestClient
    midnight: int  # T0: the UTC midnight the data end at; the clock stands at T0 + 30 min
    seed_seconds: float

    @property
    def first_minute(self) -> int:
        return self.midnight - MINUTES * 60


@pytest.fixture(scope="module")
async def ninety_days(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NinetyDays]:
    """One ingest service and one API for the module, 90 days seeded once (it is the slow part)."""
    midnight = int(time.time()) // DAY * DAY
    clock = FakeClock(midnight + 1800)
    # The data span exactly 90 days; one day more of retention keeps the oldest minute clear of
    # the retention edge, so the test does not hang on how that edge is counted.
    config = ingest_config(
        sqlite_path=str(Path(tmp_path_factory.mktemp("ninety")) / "analytics.sqlite3"), retention_days=91
    )
    async with serving_ingest(config, clock) as ingest:
        client = ingest.client()
        seeded = await seed_ninety_days(ingest.channel, client.metadata, AUCTION, midnight, "gateway-seed")
        assert seeded.outcomes == ["STORED"] * MINUTES
        print(
            f"\nseeded {MINUTES} minutes in {seeded.batches} batches via the ingest stream:",
            f"{seeded.seconds:.2f} s",
        )
        async with running_graphql(graphql_config(ingest.target), clock) as api:
            yield NinetyDays(api, client, midnight, seeded.seconds)


def at(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


async def analytics(data: NinetyDays, **variables: object) -> dict[str, Any]:
    response = await data.api.execute(ANALYTICS_QUERY, {"id": AUCTION, **variables}, token=admin_token())
    assert response.errors == []
    result: dict[str, Any] = response.data["auction"]["viewerAnalytics"]
    return result


def whole_hours_point(start: int, k: int, hours: int) -> dict[str, object]:
    """A bucket of ``hours`` whole hours of day ``k`` (every hour of a day holds the same pattern)."""
    return {
        "at": at(start),
        "avgViewers": pytest.approx(k + 1.5 + HOUR_MEAN_M),
        "peakViewers": k + 62,
        "minViewers": k,
        "viewerCount": k + 61,
        "samples": HOUR_SAMPLES * hours,
    }


async def test_all_with_auto_bucket(ninety_days: NinetyDays) -> None:
    result = await analytics(ninety_days)
    # AUTO over 90 days: 3-hour buckets would give 720 points, 6-hour ones 360 (at most ~500 wanted).
    assert result["bucketSeconds"] == 6 * 3600
    first = ninety_days.first_minute
    assert result["points"] == [whole_hours_point(first + j * 21_600, j // 4, 6) for j in range(360)]
    assert result["summary"] == {
        "overallPeak": 89 + 62,
        # Every day holds the same samples, so the mean is the mean over the days: 44.5 + 1.5 + 29.33...
        "overallAvg": pytest.approx(44.5 + 1.5 + HOUR_MEAN_M),
        "durationMinutes": 129_600.0,
        "firstAt": at(first),
        "lastAt": at(ninety_days.midnight - 60),
        "snapshotCount": 129_600,
    }
    assert await analytics(ninety_days, range="ALL") == result
    # The same as the ingest service's own 6-hour buckets.
    client = ninety_days.ingest
    direct = await client.analytics.QueryViewerAnalytics(
        analytics_pb2.QueryViewerAnalyticsRequest(auction_id=AUCTION, bucket_seconds=21_600),
        metadata=client.metadata,
    )
    assert [(point["avgViewers"], point["samples"]) for point in result["points"]] == [
        (pytest.approx(point.avg_viewers), point.sample_count) for point in direct.points
    ]


async def test_all_by_hour_and_by_day(ninety_days: NinetyDays) -> None:
    first = ninety_days.first_minute
    hourly = await analytics(ninety_days, bucket="HOUR")
    assert hourly["bucketSeconds"] == 3600
    assert hourly["points"] == [whole_hours_point(first + h * 3600, h // 24, 1) for h in range(2160)]
    daily = await analytics(ninety_days, bucket="DAY")
    assert daily["points"] == [whole_hours_point(first + k * DAY, k, 24) for k in range(90)]
    # The summary is over the raw minutes, whatever the bucket.
    assert hourly["summary"] == daily["summary"]
    assert daily["summary"]["snapshotCount"] == 129_600


async def test_last_hour(ninety_days: NinetyDays) -> None:
    result = await analytics(ninety_days, range="LAST_HOUR")
    t0 = ninety_days.midnight
    # The clock stands at T0 + 30 min: the last hour holds day 89's last 30 minutes, m = 30..59,
    # one point per minute (AUTO keeps minutes for an hour).
    assert result["bucketSeconds"] == 60
    assert result["points"] == [
        {
            "at": at(t0 - 1800 + 60 * n),
            "avgViewers": 89 + (30 + n) + 1.5,
            "peakViewers": 89 + (30 + n) + 3,
            "minViewers": 89 + (30 + n),
            "viewerCount": 89 + (30 + n) + 2,
            "samples": 12 if n % 2 == 0 else 6,
        }
        for n in range(30)
    ]
    # Samples: 15*12 + 15*6 = 270; samples*m: 12*(30+32+...+58) + 6*(31+33+...+59) = 7920 + 4050 = 11970.
    assert result["summary"] == {
        "overallPeak": 89 + 59 + 3,
        "overallAvg": pytest.approx(89 + 1.5 + 11970 / 270),
        "durationMinutes": 30.0,
        "firstAt": at(t0 - 1800),
        "lastAt": at(t0 - 60),
        "snapshotCount": 30,
    }


async def test_last_24_hours(ninety_days: NinetyDays) -> None:
    result = await analytics(ninety_days, range="LAST_24_HOURS")
    t0 = ninety_days.midnight
    # From day 89's 00:30 to its end: 1,410 minutes in 5-minute buckets (288 in a day, under 500).
    assert result["bucketSeconds"] == 300
    points = result["points"]
    assert isinstance(points, list)
    assert len(points) == 1410 // 5
    # First bucket, m = 30..34: samples 12+6+12+6+12 = 48; samples*m = 360+186+384+198+408 = 1536.
    assert points[0] == {
        "at": at(t0 - DAY + 1800),
        "avgViewers": pytest.approx(89 + 1.5 + 1536 / 48),
        "peakViewers": 89 + 34 + 3,
        "minViewers": 89 + 30,
        "viewerCount": 89 + 34 + 2,
        "samples": 48,
    }
    # Last bucket, m = 55..59: samples 6+12+6+12+6 = 42; samples*m = 330+672+342+696+354 = 2394.
    assert points[-1] == {
        "at": at(t0 - 300),
        "avgViewers": pytest.approx(89 + 1.5 + 2394 / 42),
        "peakViewers": 89 + 59 + 3,
        "minViewers": 89 + 55,
        "viewerCount": 89 + 59 + 2,
        "samples": 42,
    }
    # Half an hour (270 samples, samples*m 11970) and 23 whole hours (12420 samples, 364320).
    assert result["summary"] == {
        "overallPeak": 151,
        "overallAvg": pytest.approx(89 + 1.5 + (11970 + 364_320) / (270 + 12_420)),
        "durationMinutes": 1410.0,
        "firstAt": at(t0 - DAY + 1800),
        "lastAt": at(t0 - 60),
        "snapshotCount": 1410,
    }


async def test_last_7_days(ninety_days: NinetyDays) -> None:
    result = await analytics(ninety_days, range="LAST_7_DAYS")
    t0 = ninety_days.midnight
    # From day 83's 00:30 on: 10,050 minutes in 30-minute buckets (336 in 7 days).
    assert result["bucketSeconds"] == 1800
    points = result["points"]
    assert isinstance(points, list)
    assert len(points) == 10_050 // 30
    # :00 buckets hold m = 0..29 (270 samples, samples*m 12*210 + 6*225 = 3870); :30 ones m = 30..59 (11970).
    day83 = t0 - 7 * DAY
    assert points[0]["at"] == at(day83 + 1800)
    assert points[0]["avgViewers"] == pytest.approx(83 + 1.5 + 11970 / 270)
    assert points[1]["at"] == at(day83 + 3600)
    assert points[1]["avgViewers"] == pytest.approx(83 + 1.5 + 3870 / 270)
    assert points[1]["viewerCount"] == 83 + 29 + 2
    assert {point["samples"] for point in points} == {270}
    # Day 83 from 00:30 (12690 samples, samples*m 376290) and days 84..89 (12960 samples and 380160 each);
    # sum over those six days of samples*(k + 1.5) = 12960 * (84+...+89 + 6*1.5) = 12960 * 528.
    weighted = 12_690 * (83 + 1.5) + 376_290 + 12_960 * 528 + 6 * 380_160
    assert result["summary"] == {
        "overallPeak": 151,
        "overallAvg": pytest.approx(weighted / (12_690 + 6 * 12_960)),
        "durationMinutes": 10_050.0,
        "firstAt": at(day83 + 1800),
        "lastAt": at(t0 - 60),
        "snapshotCount": 10_050,
    }


async def test_explicit_range(ninety_days: NinetyDays) -> None:
    t0 = ninety_days.midnight
    result = await analytics(ninety_days, **{"from": at(t0 - 2 * DAY), "to": at(t0 - DAY), "bucket": "HOUR"})
    assert result["points"] == [whole_hours_point(t0 - 2 * DAY + h * 3600, 88, 1) for h in range(24)]
    assert result["summary"] == {
        "overallPeak": 88 + 62,
        "overallAvg": pytest.approx(88 + 1.5 + HOUR_MEAN_M),
        "durationMinutes": 1440.0,
        "firstAt": at(t0 - 2 * DAY),
        "lastAt": at(t0 - DAY - 60),
        "snapshotCount": 1440,
    }


async def test_minutes_over_all_data_are_too_many_points(ninety_days: NinetyDays) -> None:
    response = await ninety_days.api.execute(
        ANALYTICS_QUERY, {"id": AUCTION, "bucket": "MINUTE"}, token=admin_token()
    )
    assert response.data == {"auction": None}
    assert response.error_codes() == ["BAD_USER_INPUT"]
    assert "more than 20000 points" in response.errors[0]["message"]


async def test_csv_export_of_ninety_days(ninety_days: NinetyDays) -> None:
    response = await ninety_days.api.get(
        f"/export/auctions/{AUCTION}/viewer-analytics.csv?bucket=DAY", token=seller_token(AUCTION)
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="viewer-analytics-{AUCTION}-all-{today}.csv"'
    )
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == [
        "auction_id",
        "at_utc",
        "avg_viewers",
        "peak_viewers",
        "min_viewers",
        "viewer_count",
        "samples",
        "unique_viewers",
    ]
    assert len(rows) == 1 + 90
    first_day = datetime.fromtimestamp(ninety_days.first_minute, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Day 0: 1.5 + 29.333 = 30.833; day 89: 89 more.
    # These minutes carry no sketches: the unique viewers column is empty.
    assert rows[1] == [AUCTION, first_day, "30.833", "62", "0", "61", "12960", ""]
    assert rows[-1][2:] == ["119.833", "151", "89", "150", "12960", ""]
