"""What the application holds while it runs, reached through typed keys, and the contexts that open it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from graphql_api.auth import TokenVerifier
from graphql_api.config import GraphQLConfig
from graphql_api.ingest import IngestClient, channel_options
from graphql_api.live_counts import LiveCounts
from graphql_api.metrics import Metrics
from graphql_api.subscriptions.budget import TokenSubscriptions
from service_common.grpc_tls import open_channel
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", GraphQLConfig)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER = web.AppKey("token_verifier", TokenVerifier)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
INGEST = web.AppKey("ingest_client", IngestClient)
# Every log line a client can cause goes through this, rate-limited per cause.
CLIENT_LOG = web.AppKey("client_log", RateLimitedLog)
LIVE_COUNTS = web.AppKey("live_counts", LiveCounts)
# Every subscription field's per-token budget (GRAPHQL_MAX_SUBSCRIPTIONS_PER_TOKEN).
SUBSCRIPTIONS = web.AppKey("subscriptions", TokenSubscriptions)


async def ingest_channel(app: web.Application) -> AsyncIterator[None]:
    """Opens the one long-lived channel to the ingest service for the application's lifetime.

    Opening does not connect: the channel connects on first use and reconnects by itself, so the
    API starts (and answers health probes) while the ingest service is still starting.
    """
    config = app[CONFIG]
    channel = open_channel(config.ingest_target, config.ingest_tls, options=channel_options())
    client = IngestClient(
        channel,
        config.internal_api_key,
        config.ingest_timeout_seconds,
        app[METRICS],
        app[CLIENT_LOG],
        snapshot_interval_seconds=config.timing.snapshot_interval_seconds,
    )
    app[INGEST] = client
    logger.info(
        "Ingest channel opened", extra={"target": config.ingest_target, "tls": config.ingest_tls is not None}
    )
    try:
        yield
    finally:
        await client.close()
        await channel.close()
        logger.info("Ingest channel closed")


async def gateway_channel(app: web.Application) -> AsyncIterator[None]:
    """Opens the channel to the socket gateway's internal gRPC port, for the live count subscriptions.

    Like the ingest channel, it connects on first use (the first subscription) and reconnects by itself.
    """
    config = app[CONFIG]
    channel = open_channel(
        config.gateway_grpc_target,
        config.gateway_grpc_tls,
        options=[
            # Streams idle between count changes; pings find a vanished gateway within a minute.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ],
    )
    live = LiveCounts(
        channel,
        config.internal_api_key,
        log=app[CLIENT_LOG],
    )
    app[LIVE_COUNTS] = live
    logger.info(
        "Gateway channel opened",
        extra={"target": config.gateway_grpc_target, "tls": config.gateway_grpc_tls is not None},
    )
    try:
        yield
    finally:
        await live.close()
        await channel.close()
