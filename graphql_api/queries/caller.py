"""``Query.me``: who the token stands for and which auctions it covers."""

from __future__ import annotations

import strawberry
from strawberry.permission import PermissionExtension
from strawberry.types import Info

from graphql_api.context import Context
from graphql_api.permissions import IsAuthenticated
from graphql_api.types.caller import Caller


def resolve_me(info: Info[Context, None]) -> Caller:
    principal = info.context.principal
    # IsAuthenticated has already refused a request without one.
    assert principal is not None
    return Caller.from_principal(principal)


@strawberry.type
class CallerQueries:
    me: Caller = strawberry.field(
        resolver=resolve_me,
        description="The caller the bearer token stands for, with the auctions it covers.",
        extensions=[PermissionExtension(permissions=[IsAuthenticated()])],
    )
