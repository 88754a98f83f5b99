"""The ingest service process: configuration, store, server, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging

from ingest_service.config import VARIABLES, IngestConfig
from ingest_service.domain import StorageUnavailable
from ingest_service.server import create_ingest_server
from ingest_service.storage.factory import open_alert_store, open_event_store, open_store
from ingest_service.storage.port import SETTINGS_COLLECTION
from service_common.service_process import ensure_port_free, listen_errors, run_service
from service_common.shutdown import wait_for_stop_signal

logger = logging.getLogger(__name__)


async def serve(config: IngestConfig) -> None:
    """Serves until SIGTERM or SIGINT, then drains in-flight batches and closes the store."""
    # A busy port is refused before the store is opened (or created) for nothing.
    with listen_errors(config.host, config.port, "INGEST_PORT"):
        ensure_port_free(config.host, config.port)
    if config.metrics is not None:
        with listen_errors(config.metrics.host, config.metrics.port, "INGEST_METRICS_PORT"):
            ensure_port_free(config.metrics.host, config.metrics.port)
    store = await open_store(config)
    try:
        events = await open_event_store(config, store)
    except BaseException:
        await store.close()
        raise
    try:
        alerts = await open_alert_store(config, store)
    except BaseException:
        await events.close()
        await store.close()
        raise
    try:
        server = create_ingest_server(config, store, event_store=events, alert_store=alerts)
        await server.start()
        logger.info(
            "Ingest service listening",
            extra={
                "address": f"{config.host}:{server.port}",
                "port": server.port,
                "tls": config.tls is not None,
                # /metrics, /healthz and /readyz over plain HTTP (INGEST_METRICS_PORT=off: none).
                "metrics_address": metrics_address(config, server.metrics_port),
                "metrics_port": server.metrics_port,
                "store": "mongodb" if config.mongodb_uri else f"sqlite:{config.sqlite_path}",
                # Where each auction's enableViewerAnalytics flag is read and written.
                "analytics_flags": analytics_flags_location(config),
                "retention_days": config.retention_days,
                "sample_interval_seconds": config.timing.sample_interval_seconds,
                "snapshot_interval_seconds": config.timing.snapshot_interval_seconds,
                # The ingest service uses no Redis (only gateways do, to run as a cluster).
                "redis": "off",
            },
        )
        await wait_for_stop_signal()
        # The grace bounds how long a batch that is being written may take to finish and be acknowledged.
        await server.stop(config.shutdown_grace_seconds)
    finally:
        await alerts.close()
        await events.close()
        await store.close()


def metrics_address(config: IngestConfig, port: int | None) -> str:
    """Where ``/metrics`` is served, for the start-up line (``off`` without the HTTP listener)."""
    if config.metrics is None or port is None:
        return "off"
    host = config.metrics.host
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/metrics"


def analytics_flags_location(config: IngestConfig) -> str:
    """The collection (or SQLite table) holding the auctions' analytics flags, for the start-up line."""
    if config.mongodb_uri is None:
        return "sqlite:auction_settings"
    collection = config.mongodb.auctions_collection
    return f"mongodb:{collection}.enableViewerAnalytics" if collection else f"mongodb:{SETTINGS_COLLECTION}"


def main() -> None:
    run_service(
        "ingest_service",
        IngestConfig.from_env,
        lambda config: config.logging.apply(),
        serve,
        description="The ingest service: stores viewer snapshots and answers analytics queries (gRPC).",
        variables=VARIABLES,
        start_failures={StorageUnavailable: "Cannot open the store"},
    )
