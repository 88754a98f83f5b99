"""Finding the caller of an HTTP request from its bearer token (GraphQL and CSV export alike)."""

from __future__ import annotations

from aiohttp import web

from graphql_api.auth import InvalidToken, Principal, TokenVerifier, bearer_token

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
