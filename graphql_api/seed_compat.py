"""The seed's viewer-analytics REST route, answered from the same code path as GraphQL (the migration path).

``GET /api/v1/auctions/{auction_id}/analytics/viewers?timeRange=all|24h|7d|1h`` answers what the
seed's backend answered and its frontend reads (``res.success && res.data.snapshots``): the envelope
``{success, message, data: {snapshots, summary}}``, each snapshot with the seed's document fields.
GraphQL is the door to build on; this route exists so that a frontend can switch over unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from graphql_api import analytics
from graphql_api.budget import ResponseTooLarge, encode_json_in_slices
from graphql_api.errors import ANALYTICS_UNAVAILABLE_MESSAGE
from graphql_api.ingest import IngestUnavailable
from graphql_api.request_auth import Refusal, authorized_auction, challenge_headers
from graphql_api.resources import CLOCK, CONFIG, INGEST, VERIFIER

SEED_ANALYTICS_PATH = "/api/v1/auctions/{auction_id}/analytics/viewers"
SUCCESS_MESSAGE = "Viewer analytics retrieved successfully"

# The values and the seed's own ('hour', 'day'); no parameter at all is 'all', as in the seed.
TIME_RANGES = {
    "all": analytics.RangePreset.ALL,
    "1h": analytics.RangePreset.LAST_HOUR,
    "hour": analytics.RangePreset.LAST_HOUR,
    "24h": analytics.RangePreset.LAST_24_HOURS,
    "day": analytics.RangePreset.LAST_24_HOURS,
    "7d": analytics.RangePreset.LAST_7_DAYS,
}


def _failure(status: int, message: str) -> web.Response:
    """The seed's error envelope; a 401 also names the scheme it expects."""
    return web.json_response(
        {"success": False, "message": message}, status=status, headers=challenge_headers(status)
    )


def seed_snapshot(auction_id: str, point: analytics.AnalyticsPoint) -> dict[str, Any]:
    """A point as the seed's ``ViewerAnalytics`` document reads in JSON (Mongoose's ISO time, in ms)."""
    return {
        "auction": auction_id,
        "timestamp": point.at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "viewerCount": point.viewer_count,
        "avgViewers": point.avg_viewers,
        "peakViewers": point.peak_viewers,
        "minViewers": point.min_viewers,
        "sampleCount": point.samples,
    }


def seed_body(auction_id: str, result: analytics.ViewerAnalytics) -> dict[str, Any]:
    """The seed's response for ``result``: the summary's numbers are the GraphQL summary's."""
    snapshots = [seed_snapshot(auction_id, point) for point in result.points]
    summary = result.summary
    return {
        "success": True,
        "message": SUCCESS_MESSAGE,
        "data": {
            "snapshots": snapshots,
            "summary": {
                "totalSnapshots": summary.snapshot_count,
                "overallPeak": summary.overall_peak,
                "overallAvg": summary.overall_avg,
                # The minimum of the buckets' minimums is the range's minimum, whatever the width.
                "overallMin": min((s["minViewers"] for s in snapshots), default=0),
                "duration": summary.duration_minutes,
            },
            "bucketSeconds": result.bucket_seconds,
        },
    }


async def viewer_analytics(request: web.Request) -> web.Response:
    """``GET /api/v1/auctions/{auction_id}/analytics/viewers``: the seed's answer, under GraphQL's rules.

    The same bearer token and seller scoping as ``Query.auction``; the series at the finest width
    (the snapshot interval, one snapshot a minute by default) whose points fit the per-request
    points budget, coarser only when the range holds more minutes than that; the response within
    the bytes budget and the time budget.
    """
    app = request.app
    auction_id = authorized_auction(request, app[VERIFIER])
    if isinstance(auction_id, Refusal):
        return _failure(auction_id.status, auction_id.message)
    raw_range = request.query.get("timeRange") or "all"
    preset = TIME_RANGES.get(raw_range)
    if preset is None:
        return _failure(400, "'timeRange' must be one of " + ", ".join(TIME_RANGES))
    budget = app[CONFIG].request_budget
    window = analytics.resolve_window(
        preset, None, None, now=app[CLOCK](), max_range_seconds=app[CONFIG].max_range_days * 86_400
    )
    try:
        async with asyncio.timeout(budget.max_seconds):
            result = await app[INGEST].viewer_analytics(
                auction_id, window, analytics.Bucket.AUTO, target_points=budget.max_points
            )
            text = await encode_json_in_slices(
                seed_body(auction_id, result), max_bytes=budget.max_response_bytes
            )
    except analytics.InvalidQuery as invalid:
        return _failure(400, str(invalid))
    except IngestUnavailable:
        return _failure(503, ANALYTICS_UNAVAILABLE_MESSAGE)
    except ResponseTooLarge:
        limit = budget.max_response_bytes
        return _failure(413, f"the response would be larger than {limit} bytes; ask for a shorter timeRange")
    except TimeoutError:
        return _failure(503, f"the request took longer than {budget.max_seconds:g} s and was stopped")
    return web.Response(text=text, content_type="application/json")
