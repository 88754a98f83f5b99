"""The GraphQL endpoint: Strawberry's aiohttp view, with this API's context and error metrics."""

from __future__ import annotations

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from graphql_api.context import Context
from graphql_api.errors import error_code
from graphql_api.graphiql import graphiql_html
from graphql_api.request_auth import authenticate
from graphql_api.resources import CLOCK, CONFIG, INGEST, METRICS, VERIFIER


class ViewerAnalyticsView(GraphQLView[Context, None]):
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
        )

    async def process_result(self, request: web.Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        metrics = request.app[METRICS]
        for error in result.errors or ():
            metrics.graphql_errors.inc((("code", error_code(error)),))
        return await super().process_result(request, result)

    async def render_graphql_ide(self, request: web.Request) -> web.Response:
        # Strawberry's GraphiQL page, loading its scripts and CSS from this API instead of a CDN, so
        # it works without internet access. The app enables no other IDE.
        return web.Response(text=graphiql_html(), content_type="text/html")
