"""Permission classes guarding the schema's fields."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from graphql_api.context import Context
from graphql_api.errors import AuctionNotAuthorized, AuthenticationRequired


class IsAuthenticated(BasePermission):
    """The request carries a valid bearer token."""

    message = "authentication required"

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        if info.context.principal is None:
            # Raised here rather than in on_unauthorized, which cannot see the context to say why.
            raise AuthenticationRequired(info.context.auth_problem)
        return True


class CanAccessAuction(BasePermission):
    """The token's principal may read the auction named by the field's ``id`` argument.

    Applied after :class:`IsAuthenticated`, so a principal is present.
    """

    message = "not authorized for this auction"

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and principal.may_access(str(kwargs["id"]))

    def on_unauthorized(self) -> None:
        raise AuctionNotAuthorized(self.message)
