"""``GET /export/auctions/{auction_id}/lots.csv``: the per-lot audience table as a spreadsheet."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from graphql_api import analytics, audience
from graphql_api.errors import ANALYTICS_UNAVAILABLE_MESSAGE
from graphql_api.export_requests import csv_response, error_response, read_export_request, spreadsheet_text
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.resources import CLOCK, INGEST

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
    asked = read_export_request(request)
    if isinstance(asked, web.Response):
        return asked
    app = request.app
    try:
        lots = await audience.AudienceQueries(app[INGEST]).lots(asked.auction_id, asked.window)
    except IngestRejected as rejected:
        return error_response(400, rejected.detail)
    except IngestUnavailable:
        return error_response(503, ANALYTICS_UNAVAILABLE_MESSAGE)
    date = analytics.utc(app[CLOCK]()).strftime("%Y-%m-%d")
    return csv_response(render_lots_csv(asked.auction_id, lots), f"lots-{asked.auction_id}-{date}.csv")


def render_lots_csv(auction_id: str, lots: list[audience.Lot]) -> str:
    """One header line, then one line per lot in the order they opened."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LOT_CSV_COLUMNS)
    for lot in lots:
        writer.writerow(
            (
                auction_id,
                spreadsheet_text(lot.lot_id),
                spreadsheet_text(lot.title),
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
