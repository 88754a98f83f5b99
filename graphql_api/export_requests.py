"""What the CSV exports share: the caller's token and scope, the auction, the range, and safe cells.

Each export (``http_handlers.export_csv``, ``lot_export.export_lots_csv``) is a GET with the same
bearer token and rules as its GraphQL field, and the range as that field's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from aiohttp import web

from graphql_api import analytics
from graphql_api.request_auth import Refusal, authorized_auction, challenge_headers
from graphql_api.resources import CLOCK, CONFIG, VERIFIER

E = TypeVar("E", analytics.RangePreset, analytics.Bucket)

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets ("CSV
# injection", OWASP): text that a seller or the backend chose (a lot's title) is prefixed with an
# apostrophe, which spreadsheets show as text and do not display.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportRequest:
    """An export the caller may have: the auction and the window asked for."""

    auction_id: str
    window: analytics.TimeWindow


def read_export_request(request: web.Request) -> ExportRequest | web.Response:
    """The auction and window of an export, or the answer that refuses it (401, 403 or 400)."""
    app = request.app
    auction_id = authorized_auction(request, app[VERIFIER])
    if isinstance(auction_id, Refusal):
        return error_response(auction_id.status, auction_id.message)
    try:
        window = analytics.resolve_window(
            enum_parameter(request, "range", analytics.RangePreset),
            datetime_parameter(request, "from"),
            datetime_parameter(request, "to"),
            now=app[CLOCK](),
            max_range_seconds=app[CONFIG].max_range_days * 86_400,
        )
    except analytics.InvalidQuery as invalid:
        return error_response(400, str(invalid))
    return ExportRequest(auction_id, window)


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=challenge_headers(status))


def csv_response(text: str, filename: str) -> web.Response:
    return web.Response(
        body=text.encode(),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def spreadsheet_text(text: str) -> str:
    """``text`` as a cell a spreadsheet shows as text, never evaluates."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def enum_parameter(request: web.Request, name: str, enum_type: type[E]) -> E | None:
    """The query parameter ``name`` as a member of ``enum_type`` (any case), or None when absent.

    Raises:
        analytics.InvalidQuery: it names no member.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return enum_type[raw.upper()]
    except KeyError:
        choices = ", ".join(member.name for member in enum_type)
        raise analytics.InvalidQuery(f"'{name}' must be one of {choices}") from None


def datetime_parameter(request: web.Request, name: str) -> datetime | None:
    """The query parameter ``name`` as an ISO 8601 date-time, or None when absent.

    Raises:
        analytics.InvalidQuery: it is not one.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise analytics.InvalidQuery(
            f"'{name}' must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z"
        ) from None
