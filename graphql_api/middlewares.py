"""aiohttp middlewares: CORS for the frontend's origin, and request metrics."""

from __future__ import annotations

import time
from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from graphql_api.metrics import Metrics
from service_common.config import ANY_ORIGIN

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
# Browsers cache a preflight answer this long (seconds), sparing a round trip per query.
PREFLIGHT_MAX_AGE = "600"


def cors_middleware(allowed_origins: Collection[str]) -> Middleware:
    """Answers preflights and marks responses readable by ``allowed_origins`` only ("*": any origin).

    Credentials travel in the Authorization header, never in cookies, so no
    ``Access-Control-Allow-Credentials`` is sent.
    """
    allowed = frozenset(allowed_origins)
    any_origin = ANY_ORIGIN in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        origin_allowed = origin is not None and (any_origin or origin in allowed)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not origin_allowed:
                return web.Response(status=403, headers={"Vary": "Origin"})
            assert origin is not None
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        # Caches must not serve one origin's answer to another.
        response.headers.add("Vary", "Origin")
        if origin_allowed:
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Content-Disposition"
        return response

    return cors


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Counts and times every request by route (the route's pattern, so ids do not explode the labels)."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        route_label = route.canonical if route is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            metrics.http_requests.inc(
                (("route", route_label), ("method", request.method), ("status", str(status)))
            )
            metrics.http_duration.observe((("route", route_label),), time.perf_counter() - started)

    return measure
