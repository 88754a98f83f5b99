"""``Subscription.viewerCount``: an auction's live counts, seller-scoped like the queries."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from graphql_api.context import Context
from graphql_api.subscriptions.access import authorized_auction, subscription_slot
from graphql_api.subscriptions.shared_events import current_subscriber
from graphql_api.types.live import ViewerCount


async def subscribe_viewer_count(
    info: Info[Context, None], auction_id: strawberry.ID
) -> AsyncGenerator[ViewerCount, None]:
    principal, auction = authorized_auction(info, auction_id)
    live = info.context.live_counts
    assert live is not None, "the live counts are opened when the app starts"
    # Over a WebSocket, each event already executed for this document is sent directly (once per
    # subscriber, shared_events.py); only the others go through graphql-core and Strawberry.
    shared = current_subscriber()
    with subscription_slot(info, principal):
        subscription = live.subscribe(auction)
        try:
            while True:
                event = ViewerCount.of(await subscription.next())
                if shared is None or not await shared.deliver(event):
                    yield event
        finally:
            live.unsubscribe(subscription)


@strawberry.type
class ViewerCountSubscriptions:
    viewer_count: AsyncGenerator[ViewerCount, None] = strawberry.subscription(
        resolver=subscribe_viewer_count,
        description="The auction's live counts: the current ones at once, then each change, at most two "
        "a second, the last one the truth once changes stop. Over graphql-transport-ws, with the token "
        "in connection_init; sellers only for the auctions their token lists.",
    )
