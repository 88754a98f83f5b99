"""Building the GraphQL API's aiohttp application from its configuration and dependencies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from graphql_api import http_handlers
from graphql_api.auth import TokenVerifier
from graphql_api.config import GraphQLConfig
from graphql_api.dashboard import add_dashboard_routes
from graphql_api.lot_export import LOTS_EXPORT_PATH, export_lots_csv
from graphql_api.metrics import Metrics
from graphql_api.middlewares import cors_middleware, metrics_middleware
from graphql_api.resources import (
    CLIENT_LOG,
    CLOCK,
    CONFIG,
    METRICS,
    SUBSCRIPTIONS,
    VERIFIER,
    gateway_channel,
    ingest_channel,
)
from graphql_api.schema import create_schema
from graphql_api.seed_compat import SEED_ANALYTICS_PATH
from graphql_api.seed_compat import viewer_analytics as seed_viewer_analytics
from graphql_api.subscriptions.budget import TokenSubscriptions
from graphql_api.view import ViewerAnalyticsView
from graphql_api.widget import add_widget_routes
from graphql_api.ws import OpenConnections
from service_common.log_limits import RateLimitedLog

GRAPHQL_PATH = "/graphql"
EXPORT_PATH = "/export/auctions/{auction_id}/viewer-analytics.csv"


def create_app(config: GraphQLConfig, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The application: GraphQL at ``/graphql``, health, readiness, metrics, the CSV export, the dashboard.

    Args:
        config: the service's configuration.
        clock: epoch seconds now; range presets count back from it (tests pass a fake one).
    """
    metrics = Metrics()
    app = web.Application(middlewares=[metrics_middleware(metrics), cors_middleware(config.allowed_origins)])
    app[CONFIG] = config
    app[METRICS] = metrics
    app[VERIFIER] = TokenVerifier(config.jwt_secret)
    app[CLOCK] = clock
    # One rate-limited log for every line a client can cause, on the package's logger.
    app[CLIENT_LOG] = RateLimitedLog(logging.getLogger("graphql_api"))
    app[SUBSCRIPTIONS] = TokenSubscriptions(config.max_subscriptions_per_token)
    app.cleanup_ctx.append(ingest_channel)
    app.cleanup_ctx.append(gateway_channel)

    schema = create_schema(
        max_depth=config.max_query_depth,
        max_tokens=config.max_query_tokens,
        max_aliases=config.max_aliases,
        budget=config.request_budget,
        log=app[CLIENT_LOG],
    )
    # GraphiQL only in development: in production the page would invite probing of the schema.
    connections = OpenConnections()
    view = ViewerAnalyticsView(
        schema=schema,
        graphql_ide="graphiql" if config.dev_mode else None,
        budget=config.request_budget,
        max_subscriptions_per_connection=config.max_subscriptions_per_connection,
        idle_timeout_seconds=config.subscription_idle_timeout_seconds,
        connections=connections,
        max_query_tokens=config.max_query_tokens,
    )

    async def close_websockets(app: web.Application) -> None:
        # Before the runner waits for open handlers: a subscription would hold the stop for the grace.
        await connections.close_all()

    app.on_shutdown.append(close_websockets)
    app.router.add_route("*", GRAPHQL_PATH, view)
    app.router.add_get("/healthz", http_handlers.healthz)
    app.router.add_get("/readyz", http_handlers.readyz)
    app.router.add_get("/metrics", http_handlers.metrics)
    app.router.add_get(EXPORT_PATH, http_handlers.export_csv)
    # The seed's REST analytics, for a frontend switching over unchanged (docs/migration.md).
    app.router.add_get(SEED_ANALYTICS_PATH, seed_viewer_analytics)
    app.router.add_get(LOTS_EXPORT_PATH, export_lots_csv)
    add_dashboard_routes(app, config)
    add_widget_routes(app, config)
    return app
