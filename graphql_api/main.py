"""The GraphQL API process: configuration, the web server, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging

from aiohttp import web

from graphql_api.app import create_app
from graphql_api.config import VARIABLES, GraphQLConfig
from graphql_api.resources import CLIENT_LOG
from service_common.connection_guard import ConnectionGuard, GuardedSite
from service_common.http_server_log import HttpServerLog
from service_common.service_process import listen_errors, run_service
from service_common.shutdown import wait_for_stop_signal

logger = logging.getLogger(__name__)


async def serve(config: GraphQLConfig) -> None:
    """Serves until SIGTERM or SIGINT, then lets in-flight requests finish and closes the channel."""
    # Idle and partial-request timeouts and the per-address cap on every connection.
    connections = ConnectionGuard(config.connections)
    app = create_app(config)
    connections.install(app)
    # The grace bounds how long requests already being answered may take once a stop is asked for.
    # No access log: it is a line per request, which any client could multiply (the request counts
    # by route and status are in /metrics); aiohttp's own lines about malformed requests go through
    # the rate-limited log, without their tracebacks.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=config.shutdown_grace_seconds,
        access_log=None,
        logger=HttpServerLog(app[CLIENT_LOG]),
        **connections.runner_options(),
    )
    await runner.setup()
    try:
        site = GuardedSite(runner, config.host, config.port, connections)
        with listen_errors(config.host, config.port, "GRAPHQL_PORT"):
            await site.start()
        port = runner.addresses[0][1]
        logger.info(
            "GraphQL API listening",
            extra={
                "address": f"http://{config.host}:{port}/graphql",
                "port": port,
                "ingest_target": config.ingest_target,
                "graphiql": config.dev_mode,
                # The API stores nothing: every answer comes from the ingest service.
                "store": f"ingest:{config.ingest_target}",
                "retention_days": config.retention_days,
                "sample_interval_seconds": config.timing.sample_interval_seconds,
                "snapshot_interval_seconds": config.timing.snapshot_interval_seconds,
                "redis": "off",
            },
        )
        await wait_for_stop_signal()
    finally:
        # Closes the listening socket, waits for in-flight requests, then runs the cleanup
        # contexts (the gRPC channel closes last, after the requests that use it).
        await runner.cleanup()
    logger.info("GraphQL API stopped")


def main() -> None:
    run_service(
        "graphql_api",
        GraphQLConfig.from_env,
        lambda config: config.logging.apply(),
        serve,
        description="The GraphQL API: viewer analytics for sellers and admins, and the seller dashboard.",
        variables=VARIABLES,
    )
