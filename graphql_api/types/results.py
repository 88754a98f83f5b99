"""Expected outcomes other than success, as types: a client matches on them instead of parsing errors."""

from __future__ import annotations

import strawberry


@strawberry.type(description="The token does not cover this auction.")
class NotAuthorized:
    message: str
    auction_id: strawberry.ID


@strawberry.type(description="An argument was refused; `field` names it.")
class InvalidInput:
    message: str
    field: str
