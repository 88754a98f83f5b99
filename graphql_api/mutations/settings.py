"""``Mutation.setViewerAnalytics``: turning an auction's viewer analytics on or off."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.permission import PermissionExtension
from strawberry.types import Info

from graphql_api.context import Context
from graphql_api.errors import AnalyticsUnavailable
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.permissions import IsAuthenticated
from graphql_api.types.results import InvalidInput, NotAuthorized
from graphql_api.types.settings import ViewerAnalyticsSettings
from service_common.auction_ids import auction_id_problem

SetViewerAnalyticsResult = Annotated[
    ViewerAnalyticsSettings | NotAuthorized | InvalidInput,
    strawberry.union(
        "SetViewerAnalyticsResult",
        description="The new settings, or why they were not changed.",
    ),
]


async def resolve_set_viewer_analytics(
    info: Info[Context, None], auction_id: strawberry.ID, enabled: bool
) -> SetViewerAnalyticsResult:
    principal = info.context.principal
    # IsAuthenticated has run: a principal is present.
    assert principal is not None
    if not principal.may_access(str(auction_id)):
        return NotAuthorized(message="not authorized for this auction", auction_id=auction_id)
    problem = auction_id_problem(str(auction_id))
    if problem:
        return InvalidInput(message=problem, field="auctionId")
    try:
        settings = await info.context.ingest.set_viewer_analytics(str(auction_id), enabled)
    except IngestRejected as rejected:
        return InvalidInput(message=rejected.detail, field="auctionId")
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    return ViewerAnalyticsSettings.from_domain(settings)


@strawberry.type
class SettingsMutations:
    set_viewer_analytics: SetViewerAnalyticsResult = strawberry.mutation(
        resolver=resolve_set_viewer_analytics,
        description="Turns viewer analytics on or off for an auction the token covers (admins: any). "
        "Every snapshot the ingest service receives once the change is acknowledged is stored or skipped "
        "by the new value, the minute in progress included; with INGEST_FLAG_CACHE_SECONDS above 0 "
        "(default 0) another replica may decide by its cached value for that long.",
        extensions=[PermissionExtension(permissions=[IsAuthenticated()])],
    )
