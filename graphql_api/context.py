"""What every resolver may use: the caller, the ingest service, the clock and the limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from graphql_api.auth import Principal
from graphql_api.ingest import IngestClient
from graphql_api.live_counts import LiveCounts
from graphql_api.subscriptions.budget import TokenSubscriptions


@dataclass
class Context:
    """Built once per request by the view; resolvers reach it as ``info.context``.

    ``principal`` is None when the request carries no usable token; ``auth_problem`` then says why
    (no token, expired, bad signature...), so that the authentication error can name it.
    """

    request: web.Request
    response: web.StreamResponse
    ingest: IngestClient
    principal: Principal | None
    auth_problem: str
    clock: Callable[[], float]
    max_range_seconds: int
    # Subscriptions: the gateway's live counts, the token budget, and what the client sent in connection_init
    # (Strawberry fills it in; the view reads the token from it).
    live_counts: LiveCounts | None = None
    # Every subscription's per-token budget (the API process's one).
    subscriptions: TokenSubscriptions | None = None
    connection_params: dict[str, object] | None = None
    # When the WebSocket's token stops being accepted (epoch seconds); the socket is closed then.
    token_expires_at: float | None = None
