"""An auction as the frontend sees it: its settings and its viewer analytics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from graphql_api import analytics
from graphql_api.context import Context
from graphql_api.errors import AnalyticsUnavailable, BadUserInput
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.types.analytics import ViewerAnalytics
from graphql_api.types.audience import (
    AuctionEventPage,
    AuctionFunnel,
    BidsAgainstViewers,
    Lot,
    resolve_bids,
    resolve_events,
    resolve_funnel,
    resolve_lots,
)
from graphql_api.types.enums import Bucket, RangePreset
from graphql_api.types.settings import ViewerAnalyticsSettings


async def resolve_settings(root: Auction, info: Info[Context, None]) -> ViewerAnalyticsSettings:
    try:
        settings = await info.context.ingest.get_settings(str(root.id))
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    except IngestRejected as rejected:
        raise BadUserInput(rejected.detail) from None
    return ViewerAnalyticsSettings.from_domain(settings)


async def resolve_viewer_analytics(
    root: Auction,
    info: Info[Context, None],
    range_: Annotated[RangePreset | None, strawberry.argument(name="range")] = None,
    from_: Annotated[
        datetime | None, strawberry.argument(name="from", description="Start, inclusive.")
    ] = None,
    to: Annotated[datetime | None, strawberry.argument(description="End, exclusive.")] = None,
    bucket: Bucket = Bucket.AUTO,
) -> ViewerAnalytics:
    context = info.context
    try:
        window = analytics.resolve_window(
            range_, from_, to, now=context.clock(), max_range_seconds=context.max_range_seconds
        )
        result = await context.ingest.viewer_analytics(
            str(root.id), window, bucket, unique_viewers=_selects_unique_viewers(info.selected_fields)
        )
    except analytics.InvalidQuery as invalid:
        raise BadUserInput(str(invalid)) from None
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    return ViewerAnalytics.from_domain(result)


_UNIQUE_VIEWER_FIELDS = frozenset({"uniqueViewers", "uniqueViewerEstimate"})


def _selects_unique_viewers(selections: Sequence[Selection], depth: int = 0) -> bool:
    """Whether ``viewerAnalytics { summary { uniqueViewers } }`` (or its estimate) is asked for,
    through fragments too: merging sketches costs more than the rest, so only then."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            if depth == 2 and selection.name in _UNIQUE_VIEWER_FIELDS:
                return True
            descends = depth == 0 or (depth == 1 and selection.name == "summary")
            if descends and _selects_unique_viewers(selection.selections, depth + 1):
                return True
        elif _selects_unique_viewers(selection.selections, depth):
            return True
    return False


@strawberry.type(description="A live auction. Unknown auctions have analytics off and no data.")
class Auction:
    id: strawberry.ID
    settings: ViewerAnalyticsSettings = strawberry.field(
        resolver=resolve_settings, description="The auction's viewer-analytics settings."
    )
    viewer_analytics: ViewerAnalytics = strawberry.field(
        resolver=resolve_viewer_analytics,
        description="Viewer counts over a range: a preset (`range`, default ALL) or explicit `from` and "
        "`to` (default now), in buckets of `bucket` (default AUTO).",
    )
    lots: Sequence[Lot] = strawberry.field(
        resolver=resolve_lots,
        description="The lots that opened in the range (default ALL), in the order they opened, with "
        "their viewers at the opening and at the hammer.",
    )
    bids: BidsAgainstViewers = strawberry.field(
        resolver=resolve_bids, description="The bids of the range, oldest first, with the viewers watching."
    )
    events: AuctionEventPage = strawberry.field(
        resolver=resolve_events,
        description="The auction's events over the range (default ALL), oldest first, a page at a time.",
    )
    funnel: AuctionFunnel = strawberry.field(
        resolver=resolve_funnel, description="Viewers, bidders, bids and lots sold over the range."
    )
