"""Finding the caller of an HTTP request from its bearer token (GraphQL, CSV exports, the seed's route)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from graphql_api.auth import InvalidToken, Principal, TokenVerifier, bearer_token
from service_common.auction_ids import auction_id_problem

NO_TOKEN = "authentication required: send 'Authorization: Bearer <token>'"


def authenticate(request: web.Request, verifier: TokenVerifier) -> tuple[Principal | None, str]:
    """The request's principal, or None with the reason it has none (safe to show the caller)."""
    try:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return None, NO_TOKEN
        return verifier.verify(token), ""
    except InvalidToken as invalid:
        return None, f"authentication failed: {invalid}"


@dataclass(frozen=True)
class Refusal:
    """Why a request for one auction is refused: the HTTP status and a message safe to show."""

    status: int
    message: str


def authorized_auction(request: web.Request, verifier: TokenVerifier) -> str | Refusal:
    """The ``auction_id`` of the request's path, when its bearer token may read that auction.

    Otherwise the refusal: 401 without a valid token, 403 for an auction the token does not cover,
    400 for an id that cannot be an auction's.
    """
    principal, problem = authenticate(request, verifier)
    if principal is None:
        return Refusal(401, problem)
    auction_id = request.match_info["auction_id"]
    if not principal.may_access(auction_id):
        return Refusal(403, "not authorized for this auction")
    id_problem = auction_id_problem(auction_id)
    if id_problem:
        return Refusal(400, id_problem)
    return auction_id


def challenge_headers(status: int) -> dict[str, str] | None:
    """The ``WWW-Authenticate`` header a 401 carries, naming the scheme it expects."""
    return {"WWW-Authenticate": 'Bearer realm="viewer-analytics"'} if status == 401 else None
