"""The GraphQL endpoint: Strawberry's aiohttp view, with this API's context, error metrics and the
response-bytes and time budgets."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

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
from graphql_api.resources import CLOCK, CONFIG, INGEST, METRICS, VERIFIER


class EncodedResponse(dict[str, Any]):
    """A response already encoded as JSON (``text``), so ``encode_json`` does not encode it again."""

    def __init__(self, data: GraphQLHTTPResponse, text: str) -> None:
        super().__init__(data)
        self.text = text


class ViewerAnalyticsView(GraphQLView[Context, None]):
    def __init__(self, *, budget: RequestBudget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._budget = budget

    async def __call__(self, request: web.Request) -> web.StreamResponse:
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
        )

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
        return super().encode_json(data)

    async def render_graphql_ide(self, request: web.Request) -> web.Response:
        # Strawberry's GraphiQL page, loading its scripts and CSS from this API instead of a CDN, so
        # it works without internet access. The app enables no other IDE.
        return web.Response(text=graphiql_html(), content_type="text/html")
