"""``Subscription.alertDeliveries``: an auction's webhook deliveries as they are queued and attempted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from graphql_api.alerts import AlertRules
from graphql_api.context import Context
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.subscriptions.access import authorized_auction, subscription_slot
from graphql_api.types.alerts import AlertDelivery

# How often the delivery log is read for a subscriber: the log lives in the ingest service, which
# has no change stream; one small call a second per subscription, bounded by the subscriptions a
# connection and a token may hold (GRAPHQL_MAX_SUBSCRIPTIONS_PER_CONNECTION, _PER_TOKEN).
POLL_SECONDS = 1.0
# The newest deliveries compared at each poll: more new ones than this within a second are seen
# only in their latest state.
WINDOW = 50


async def subscribe_alert_deliveries(
    info: Info[Context, None], auction_id: strawberry.ID
) -> AsyncGenerator[AlertDelivery, None]:
    principal, auction = authorized_auction(info, auction_id)
    rules = AlertRules(info.context.ingest)
    with subscription_slot(info, principal):
        seen: dict[str, tuple[str, int]] | None = None
        while True:
            try:
                page = await rules.deliveries(auction, None, WINDOW, None)
            except (IngestUnavailable, IngestRejected):
                # Said in the ingest client's log; the subscription goes on and catches up when it
                # answers.
                await asyncio.sleep(POLL_SECONDS)
                continue
            current = {each.delivery_id: (each.status, each.attempts) for each in page.deliveries}
            # Oldest first, so a client sees them in the order they happened. The first read sends
            # the deliveries still pending (they will change); those already finished are the query's.
            for delivery in reversed(page.deliveries):
                state = current[delivery.delivery_id]
                if (seen is None and delivery.status == "PENDING") or (
                    seen is not None and seen.get(delivery.delivery_id) != state
                ):
                    yield AlertDelivery.from_domain(delivery)
            seen = current
            await asyncio.sleep(POLL_SECONDS)


@strawberry.type
class AlertDeliverySubscriptions:
    alert_deliveries: AsyncGenerator[AlertDelivery, None] = strawberry.subscription(
        resolver=subscribe_alert_deliveries,
        description="The auction's webhook deliveries: first those still pending, then each new one and "
        "each change of a delivery's status or attempts (read from the delivery log every second). Over "
        "graphql-transport-ws with the token in connection_init; sellers only for their auctions.",
    )
