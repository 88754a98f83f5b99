"""The plain HTTP endpoints beside GraphQL: health, readiness, metrics and the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import UTC

from aiohttp import web

from graphql_api import analytics
from graphql_api.errors import ANALYTICS_UNAVAILABLE_MESSAGE
from graphql_api.export_requests import (
    csv_response,
    datetime_parameter,
    enum_parameter,
    error_response,
    read_export_request,
)
from graphql_api.ingest import IngestUnavailable
from graphql_api.resources import CLOCK, INGEST, METRICS

logger = logging.getLogger(__name__)

# The zone is in the time column's name, so a spreadsheet that drops the values' "Z" still says it.
CSV_COLUMNS = (
    "auction_id",
    "at_utc",
    "avg_viewers",
    "peak_viewers",
    "min_viewers",
    "viewer_count",
    "samples",
    # The bucket's distinct viewers (from the snapshots' sketches); empty where no minute of it has one.
    "unique_viewers",
)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP. It does not look at the ingest service (that is readiness)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the ingest service serves and accepts this API's internal key."""
    readiness = await request.app[INGEST].readiness()
    if readiness.ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": readiness.reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the API's metrics."""
    body = request.app[METRICS].render()
    return web.Response(body=body.encode(), headers={"Content-Type": request.app[METRICS].CONTENT_TYPE})


async def export_csv(request: web.Request) -> web.Response:
    """``GET /export/auctions/{auction_id}/viewer-analytics.csv``: the series as a spreadsheet.

    Query parameters as the GraphQL field's arguments: ``range`` (a preset name), or ``from`` and
    ``to`` (ISO 8601 with a time zone), and ``bucket`` (default AUTO). Same bearer token, same rules.
    """
    asked = read_export_request(request)
    if isinstance(asked, web.Response):
        return asked
    app = request.app
    try:
        bucket = enum_parameter(request, "bucket", analytics.Bucket) or analytics.Bucket.AUTO
        result = await app[INGEST].viewer_analytics(
            asked.auction_id, asked.window, bucket, point_unique_viewers=True
        )
    except analytics.InvalidQuery as invalid:
        return error_response(400, str(invalid))
    except IngestUnavailable:
        return error_response(503, ANALYTICS_UNAVAILABLE_MESSAGE)
    filename = export_filename(asked.auction_id, request, now=app[CLOCK]())
    # 20,000 rows take ~50 ms to render, longer on a busy machine: in a worker thread, whose Python
    # code gives the event loop the interpreter back every few milliseconds (sys.getswitchinterval).
    text = await asyncio.to_thread(render_csv, asked.auction_id, result)
    return csv_response(text, filename)


def export_filename(auction_id: str, request: web.Request, *, now: float) -> str:
    """``viewer-analytics-<auction>-<range>-<UTC date of the export>.csv``: files saved on different
    days, of different auctions or ranges, do not overwrite each other and say what they hold.

    The range is the preset's name (``last_hour``), ``from-<start>`` (``-to-<end>``) in UTC, or ``all``.
    """
    preset = request.query.get("range")
    start, end = datetime_parameter(request, "from"), datetime_parameter(request, "to")
    if start is not None:
        stamp = "%Y%m%dT%H%M%SZ"
        span = f"from-{start.astimezone(UTC).strftime(stamp)}"
        if end is not None:
            span += f"-to-{end.astimezone(UTC).strftime(stamp)}"
    else:
        span = preset.lower() if preset else "all"
    return f"viewer-analytics-{auction_id}-{span}-{analytics.utc(now).strftime('%Y-%m-%d')}.csv"


def render_csv(auction_id: str, result: analytics.ViewerAnalytics) -> str:
    """One header line, then one line per point, oldest first; times in ISO 8601 UTC."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for point in result.points:
        writer.writerow(
            (
                auction_id,
                point.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                f"{point.avg_viewers:.3f}",
                point.peak_viewers,
                point.min_viewers,
                point.viewer_count,
                point.samples,
                "" if point.unique_viewers is None else round(point.unique_viewers),
            )
        )
    return buffer.getvalue()
