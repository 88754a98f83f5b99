"""The benchmark's baseline: a bare aiohttp server making the same gRPC calls as the GraphQL API.

``python -m bench.graphql_baseline`` (started by ``bench.graphql_latency``; not a service). It reads
``INGEST_TARGET``, ``INTERNAL_API_KEY``, ``BASELINE_PORT`` and answers, as JSON shaped like the
GraphQL response's data:

- ``GET /settings/{auction_id}``: one ``GetAuctionSettings`` call;
- ``GET /analytics/{auction_id}?bucket_seconds=N``: one ``QueryViewerAnalytics`` over all data;
- ``GET /analytics/{auction_id}?auto=1``: the two calls the API makes for ``ALL`` with ``AUTO``.

No auth, no validation, no schema: what remains of the API's latency above this is the framework's.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

import grpc
from aiohttp import web
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2_grpc as analytics_grpc

from graphql_api.analytics import auto_bucket_seconds
from service_common.internal_auth import internal_key_metadata
from service_common.shutdown import wait_for_stop_signal

CHANNEL = web.AppKey("channel", grpc.aio.Channel)
TIMEOUT_SECONDS = 10.0
# As graphql_api.ingest: the call that brings ALL's summary asks for 30-day buckets (whole hours).
ONE_BUCKET_SECONDS = 30 * 86_400


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _metadata() -> tuple[tuple[str, str], ...]:
    return internal_key_metadata(os.environ["INTERNAL_API_KEY"].split(",")[0].strip())


async def settings(request: web.Request) -> web.Response:
    stub = settings_grpc.AuctionSettingsServiceStub(request.app[CHANNEL])
    response = await stub.GetAuctionSettings(
        settings_pb2.GetAuctionSettingsRequest(auction_id=request.match_info["auction_id"]),
        metadata=_metadata(),
        timeout=TIMEOUT_SECONDS,
    )
    found = response.settings
    updated = found.updated_at.ToDatetime(tzinfo=UTC).isoformat() if found.HasField("updated_at") else None
    return web.json_response(
        {
            "auction": {
                "settings": {"enableViewerAnalytics": found.enable_viewer_analytics, "updatedAt": updated}
            }
        }
    )


async def _query(channel: grpc.aio.Channel, auction_id: str, bucket_seconds: int) -> Any:
    stub = analytics_grpc.ViewerAnalyticsServiceStub(channel)
    return await stub.QueryViewerAnalytics(
        analytics_pb2.QueryViewerAnalyticsRequest(auction_id=auction_id, bucket_seconds=bucket_seconds),
        metadata=_metadata(),
        timeout=TIMEOUT_SECONDS,
    )


async def analytics(request: web.Request) -> web.Response:
    auction_id = request.match_info["auction_id"]
    channel = request.app[CHANNEL]
    if request.query.get("auto"):
        # What the API does for ALL + AUTO: one bucket for the span, then the series.
        overview = await _query(channel, auction_id, ONE_BUCKET_SECONDS)
        first, last = overview.summary.first_at.seconds, overview.summary.last_at.seconds
        bucket_seconds = auto_bucket_seconds(first, last + 1)
    else:
        bucket_seconds = int(request.query["bucket_seconds"])
    response = await _query(channel, auction_id, bucket_seconds)
    summary = response.summary
    return web.json_response(
        {
            "auction": {
                "viewerAnalytics": {
                    "bucketSeconds": bucket_seconds,
                    "points": [
                        {
                            "at": _iso(point.bucket_start.seconds),
                            "avgViewers": point.avg_viewers,
                            "peakViewers": point.peak_viewers,
                            "minViewers": point.min_viewers,
                            "viewerCount": point.viewer_count,
                            "samples": point.sample_count,
                        }
                        for point in response.points
                    ],
                    "summary": {
                        "overallPeak": summary.overall_peak,
                        "overallAvg": summary.overall_avg,
                        "durationMinutes": summary.duration_minutes,
                        "firstAt": _iso(summary.first_at.seconds),
                        "lastAt": _iso(summary.last_at.seconds),
                        "snapshotCount": summary.snapshot_count,
                    },
                }
            }
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _channel(app: web.Application) -> Any:
    app[CHANNEL] = grpc.aio.insecure_channel(os.environ["INGEST_TARGET"])
    yield
    await app[CHANNEL].close()


async def serve() -> None:
    app = web.Application()
    app.cleanup_ctx.append(_channel)
    app.router.add_get("/settings/{auction_id}", settings)
    app.router.add_get("/analytics/{auction_id}", analytics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", int(os.environ["BASELINE_PORT"])).start()
        await wait_for_stop_signal()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
