"""``Query.auction``: the entry to an auction's settings and analytics."""

from __future__ import annotations

import strawberry
from strawberry.permission import PermissionExtension

from graphql_api.errors import BadUserInput
from graphql_api.permissions import CanAccessAuction, IsAuthenticated
from graphql_api.types.auction import Auction
from service_common.auction_ids import auction_id_problem


def resolve_auction(id: strawberry.ID) -> Auction | None:
    problem = auction_id_problem(str(id))
    if problem:
        raise BadUserInput(problem)
    return Auction(id=id)


@strawberry.type
class AuctionQueries:
    auction: Auction | None = strawberry.field(
        resolver=resolve_auction,
        description="An auction the token covers (admins: any). Unknown auctions answer with analytics "
        "off and empty data, not an error.",
        extensions=[PermissionExtension(permissions=[IsAuthenticated(), CanAccessAuction()])],
    )
