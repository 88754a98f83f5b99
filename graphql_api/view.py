"""The GraphQL endpoint: Strawberry's aiohttp view, with this API's context, error metrics and the
response-bytes and time budgets."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from graphql_api.auth import InvalidToken
from graphql_api.budget import (
    BUDGET_EXCEEDED,
    RequestBudget,
    ResponseTooLarge,
    budget_error,
    encode_json_in_slices,
)
from graphql_api.context import Context
from graphql_api.errors import error_code
from graphql_api.graphiql import graphiql_html
from graphql_api.request_auth import authenticate
from graphql_api.resources import CLOCK, CONFIG, INGEST, LIVE_COUNTS, METRICS, SUBSCRIPTIONS, VERIFIER
from graphql_api.ws import LimitedTransportWSHandler, OpenConnections, SharedDataEncoder, connection_principal


class EncodedResponse(dict[str, Any]):
    """A response already encoded as JSON (``text``), so ``encode_json`` does not encode it again."""

    def __init__(self, data: GraphQLHTTPResponse, text: str) -> None:
        super().__init__(data)
        self.text = text


class ViewerAnalyticsView(GraphQLView[Context, None]):
    """Queries and mutations over HTTP; subscriptions over graphql-transport-ws (only that protocol).

    Args:
        budget: what one HTTP request may cost (a subscription's WebSocket is not held to its seconds).
        max_subscriptions_per_connection: operations one WebSocket may run at once.
        idle_timeout_seconds: a WebSocket without connection_init, or without any operation, this long
            is closed.
        connections: the open WebSockets, closed by the app's stop.
        max_query_tokens: the document limit, for the WebSocket's check that a document subscribes.
    """

    graphql_transport_ws_handler_class = LimitedTransportWSHandler

    def __init__(
        self,
        *,
        budget: RequestBudget,
        max_subscriptions_per_connection: int = 10,
        idle_timeout_seconds: float = 60.0,
        connections: OpenConnections | None = None,
        max_query_tokens: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            max_subscriptions_per_connection=max_subscriptions_per_connection,
            connection_init_wait_timeout=timedelta(seconds=idle_timeout_seconds),
            **kwargs,
        )
        self._budget = budget
        self.connections = connections or OpenConnections()
        self._next_encoder = SharedDataEncoder()
        # A WebSocket's documents are parsed once before Strawberry does (ws.not_a_subscription).
        self.max_query_tokens = max_query_tokens

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.is_websocket_request(request):
            # A subscription lives as long as its client wants; the idle timeout bounds the rest.
            return await super().__call__(request)
        deadline = asyncio.timeout(self._budget.max_seconds)
        try:
            async with deadline:
                return await super().__call__(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            error = budget_error(
                "seconds",
                self._budget.max_seconds,
                f"the request took longer than {self._budget.max_seconds:g} s and was stopped; "
                "ask for fewer fields or points",
            )
            request.app[METRICS].graphql_errors.inc((("code", BUDGET_EXCEEDED),))
            return web.json_response({"data": None, "errors": [error]})

    async def get_context(
        self, request: web.Request, response: web.Response | web.WebSocketResponse
    ) -> Context:
        app = request.app
        principal, problem = authenticate(request, app[VERIFIER])
        return Context(
            request=request,
            response=response,
            ingest=app[INGEST],
            principal=principal,
            auth_problem=problem,
            clock=app[CLOCK],
            max_range_seconds=app[CONFIG].max_range_days * 86_400,
            live_counts=app.get(LIVE_COUNTS),
            subscriptions=app[SUBSCRIPTIONS],
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Accepts a WebSocket whose ``connection_init`` carries a valid token; else closes it (4403)."""
        try:
            context.principal, context.token_expires_at = connection_principal(
                context.connection_params, context.request.app[VERIFIER]
            )
        except InvalidToken as invalid:
            context.principal = None
            raise ConnectionRejectionError({"message": f"authentication failed: {invalid}"}) from None
        context.auth_problem = ""
        return await super().on_ws_connect(context)

    async def process_result(self, request: web.Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """The response, encoded here a slice at a time (20,000 points are 2.3 MB of JSON, ~60 ms to
        encode in one go) and replaced by a budget error when it grows past the byte budget."""
        metrics = request.app[METRICS]
        data = await super().process_result(request, result)
        try:
            text = await encode_json_in_slices(data, max_bytes=self._budget.max_response_bytes)
        except ResponseTooLarge:
            limit = self._budget.max_response_bytes
            data = {
                "data": None,
                "errors": [
                    budget_error(
                        "responseBytes",
                        limit,
                        f"the response would be larger than {limit} bytes; ask for fewer fields or points",
                    )
                ],
            }
            metrics.graphql_errors.inc((("code", BUDGET_EXCEEDED),))
            return data
        for error in result.errors or ():
            metrics.graphql_errors.inc((("code", error_code(error)),))
        return cast(GraphQLHTTPResponse, EncodedResponse(data, text))

    def encode_json(self, data: object) -> str | bytes:
        if isinstance(data, EncodedResponse):
            return data.text
        shared = self._next_encoder.encode(data)
        if shared is not None:
            return shared
        return super().encode_json(data)

    async def render_graphql_ide(self, request: web.Request) -> web.Response:
        # Strawberry's GraphiQL page, loading its scripts and CSS from this API instead of a CDN, so
        # it works without internet access. The app enables no other IDE.
        return web.Response(text=graphiql_html(), content_type="text/html")
