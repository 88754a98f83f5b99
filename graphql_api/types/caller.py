"""Who a bearer token stands for, as the dashboard shows it ("signed in as …") and its auction list."""

from __future__ import annotations

import strawberry

from graphql_api.auth import Principal, Role

strawberry.enum(Role, name="Role", description="What a token's `role` claim says.")


@strawberry.type(description="The caller a bearer token stands for.")
class Caller:
    subject: str = strawberry.field(description="The token's `sub` claim.")
    role: Role
    auctions: list[strawberry.ID] = strawberry.field(
        description="The auctions the token lists, sorted (a seller may open only these; an admin any)."
    )
    covers_all_auctions: bool = strawberry.field(description="True for admins: every auction, listed or not.")

    @classmethod
    def from_principal(cls, principal: Principal) -> Caller:
        return cls(
            subject=principal.subject,
            role=principal.role,
            auctions=[strawberry.ID(auction) for auction in sorted(principal.auctions)],
            covers_all_auctions=principal.role is Role.ADMIN,
        )
