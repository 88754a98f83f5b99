"""``GET /export/auctions/{auction_id}/lots.csv``: the per-lot audience table as a spreadsheet."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from graphql_api import analytics, audience
from graphql_api.errors import ANALYTICS_UNAVAILABLE_MESSAGE
from graphql_api.http_handlers import _datetime_parameter, _enum_parameter, _error
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.request_auth import authenticate
from graphql_api.resources import CLOCK, CONFIG, INGEST, VERIFIER
from service_common.auction_ids import auction_id_problem

LOTS_EXPORT_PATH = "/export/auctions/{auction_id}/lots.csv"

# Times in UTC (the column names say so); money in minor units with its currency, as stored.
LOT_CSV_COLUMNS = (
    "auction_id",
    "lot_id",
    "title",
    "opened_at_utc",
    "closed_at_utc",
    "outcome",
    "hammer_price_minor_units",
    "currency",
    "viewers_at_open",
    "viewers_at_close",
    "peak_viewers",
    "avg_viewers",
    "bids",
    "bidders",
    "resolution",
)
_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


async def export_lots_csv(request: web.Request) -> web.Response:
    """The lots that opened in the range (``range``, or ``from`` and ``to``), one line each.

    Same bearer token and rules as the GraphQL field ``Auction.lots``.
    """
    app = request.app
    principal, problem = authenticate(request, app[VERIFIER])
    if principal is None:
        return _error(401, problem)
    auction_id = request.match_info["auction_id"]
    if not principal.may_access(auction_id):
        return _error(403, "not authorized for this auction")
    id_problem = auction_id_problem(auction_id)
    if id_problem:
        return _error(400, id_problem)
    try:
        window = analytics.resolve_window(
            _enum_parameter(request, "range", analytics.RangePreset),
            _datetime_parameter(request, "from"),
            _datetime_parameter(request, "to"),
            now=app[CLOCK](),
            max_range_seconds=app[CONFIG].max_range_days * 86_400,
        )
        lots = await audience.AudienceQueries(app[INGEST]).lots(auction_id, window)
    except analytics.InvalidQuery as invalid:
        return _error(400, str(invalid))
    except IngestRejected as rejected:
        return _error(400, rejected.detail)
    except IngestUnavailable:
        return _error(503, ANALYTICS_UNAVAILABLE_MESSAGE)
    date = analytics.utc(app[CLOCK]()).strftime("%Y-%m-%d")
    return web.Response(
        body=render_lots_csv(auction_id, lots).encode(),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="lots-{auction_id}-{date}.csv"',
        },
    )


def render_lots_csv(auction_id: str, lots: list[audience.Lot]) -> str:
    """One header line, then one line per lot in the order they opened."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LOT_CSV_COLUMNS)
    for lot in lots:
        writer.writerow(
            (
                auction_id,
                lot.lot_id,
                lot.title,
                lot.opened_at.strftime(_STAMP),
                lot.closed_at.strftime(_STAMP) if lot.closed_at else "",
                lot.outcome or "",
                "" if lot.hammer_price is None else lot.hammer_price,
                lot.currency or "",
                lot.viewers_at_open,
                lot.viewers_at_close,
                lot.peak_viewers,
                f"{lot.avg_viewers:.3f}",
                lot.bids,
                lot.bidders,
                lot.resolution,
            )
        )
    return buffer.getvalue()
