"""``Subscription.viewerCount``: an auction's live counts, seller-scoped like the queries."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from graphql_api.context import Context
from graphql_api.errors import AuctionNotAuthorized, AuthenticationRequired, BadUserInput
from graphql_api.types.live import ViewerCount
from service_common.auction_ids import auction_id_problem


async def subscribe_viewer_count(
    info: Info[Context, None], auction_id: strawberry.ID
) -> AsyncGenerator[ViewerCount, None]:
    context = info.context
    principal = context.principal
    if principal is None:
        raise AuthenticationRequired(context.auth_problem)
    auction = str(auction_id)
    problem = auction_id_problem(auction)
    if problem:
        raise BadUserInput(problem)
    if not principal.may_access(auction):
        raise AuctionNotAuthorized("not authorized for this auction")
    live = context.live_counts
    assert live is not None, "the live counts are opened when the app starts"
    subscription = live.subscribe(auction, principal.subject)
    try:
        while True:
            yield ViewerCount.of(await subscription.next())
    finally:
        live.unsubscribe(subscription, principal.subject)


@strawberry.type
class ViewerCountSubscriptions:
    viewer_count: AsyncGenerator[ViewerCount, None] = strawberry.subscription(
        resolver=subscribe_viewer_count,
        description="The auction's live counts: the current ones at once, then each change, at most two "
        "a second, the last one the truth once changes stop. Over graphql-transport-ws, with the token "
        "in connection_init; sellers only for the auctions their token lists.",
    )
