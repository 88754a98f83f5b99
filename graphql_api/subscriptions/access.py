"""What every subscription field does before it streams: the caller, the auction, the token's budget.

One mechanism for every subscription (``viewerCount``, ``alertDeliveries``): the per-connection limit
and the idle timeout are the WebSocket handler's (graphql_api/ws.py), the per-token limit is the
:class:`TokenSubscriptions` budget (subscriptions/budget.py), shared by every connection of the
API process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import strawberry
from strawberry.types import Info

from graphql_api.auth import Principal
from graphql_api.context import Context
from graphql_api.errors import AuctionNotAuthorized, AuthenticationRequired, BadUserInput
from graphql_api.subscriptions.budget import TokenSubscriptions
from service_common.auction_ids import auction_id_problem


def authorized_auction(info: Info[Context, None], auction_id: strawberry.ID) -> tuple[Principal, str]:
    """The caller and the auction it subscribes to, checked as the queries check them.

    Raises:
        AuthenticationRequired: no usable token in connection_init.
        BadUserInput: not an auction id.
        AuctionNotAuthorized: a seller's token that does not list the auction.
    """
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
    return principal, auction


@contextmanager
def subscription_slot(info: Info[Context, None], principal: Principal) -> Iterator[None]:
    """One of the caller's subscriptions held against its token's budget while the block runs.

    Raises:
        SubscriptionLimitReached: the token already holds as many as it may.
    """
    budget: TokenSubscriptions | None = info.context.subscriptions
    assert budget is not None, "the view gives every WebSocket the API's subscription budget"
    with budget.hold(principal.subject):
        yield
