"""What the application holds while it runs, reached through typed keys, and the contexts that open it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from graphql_api.auth import TokenVerifier
from graphql_api.config import GraphQLConfig
from graphql_api.ingest import IngestClient, channel_options
from graphql_api.metrics import Metrics
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
