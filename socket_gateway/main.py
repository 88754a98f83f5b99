"""The gateway process: configuration, web server, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import logging
import sqlite3
from collections.abc import Callable

from aiohttp import web

from service_common.service_process import ensure_port_free, listen_errors, run_service
from service_common.shutdown import wait_for_stop_signal
from socket_gateway.app import GATEWAY, GatewaySite, create_app
from socket_gateway.config import VARIABLES, GatewayConfig

logger = logging.getLogger(__name__)

# Everything the gateway builds at start-up lives until exit. Freezing it takes it out of every
# later collection, and a higher first threshold makes collections rarer while thousands of small
# packets are alive. The measurement: 80-130 us of CPU per delivered update as shipped,
# about 50 us with this tuning (not measured on its own since; bench/gateway_bench.py measures the whole).
_GC_THRESHOLDS = (50_000, 20, 20)


SiteFactory = Callable[[web.AppRunner, str, int, int], web.BaseSite]


def gateway_site(runner: web.AppRunner, host: str, port: int, backlog: int) -> web.BaseSite:
    return GatewaySite(runner, host, port, backlog=backlog)


async def serve(config: GatewayConfig, make_site: SiteFactory = gateway_site) -> None:
    """Serves until SIGTERM or SIGINT, then closes the partial interval, flushes and stops.

    ``make_site`` is for benchmarks that measure a different listener against this one.
    """
    # A busy port is refused before anything opens: a second gateway started by mistake must not open
    # an outbox, send from it or join the cluster on its way to the refusal (they open in setup()).
    with listen_errors(config.host, config.port, "GATEWAY_PORT"):
        ensure_port_free(config.host, config.port)
    app = create_app(config)
    # By the time aiohttp waits for open handlers, on_shutdown has flushed and told every Socket.IO
    # client goodbye; a WebSocket still open then only waits for its peer's close frame, which
    # browsers send at once, so a short grace is enough before aiohttp cancels the rest.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=0.5,
        access_log=None,
        **app[GATEWAY].websockets.runner_options(),
    )
    await runner.setup()
    try:
        site = make_site(runner, config.host, config.port, config.listen_backlog)
        with listen_errors(config.host, config.port, "GATEWAY_PORT"):
            await site.start()
        ports = [address[1] for address in runner.addresses]
        live_counts = app[GATEWAY].live_counts
        gc.freeze()
        gc.set_threshold(*_GC_THRESHOLDS)
        logger.info(
            "Socket gateway listening",
            extra={
                "address": f"{config.host}:{ports[0]}",
                "port": ports[0],
                "ingest_target": config.ingest_target,
                "outbox": config.outbox_path,
                "gateway_id": config.gateway_id,
                # The internal gRPC port (LiveCountService), bound when the app started.
                "grpc_address": f"{config.grpc_host}:{live_counts.port if live_counts else 0}",
                "socketio_path": ",".join(config.socketio_paths),
                "sample_interval_seconds": config.timing.sample_interval_seconds,
                "snapshot_interval_seconds": config.timing.snapshot_interval_seconds,
                # On or off only: the URL may carry a password.
                "redis": "on" if config.redis_url else "off",
            },
        )
        await wait_for_stop_signal()
    finally:
        await runner.cleanup()
    # What this process put into its outbox file in all, the interval closed at stop included: what an
    # operator (or a test) compares with the ingest service's store.
    logger.info(
        "Socket gateway stopped",
        extra={"snapshots_enqueued_total": app[GATEWAY].metrics.snapshots_enqueued_total},
    )


def main(make_site: SiteFactory = gateway_site) -> None:
    run_service(
        "socket_gateway",
        GatewayConfig.from_env,
        lambda config: config.logging.apply(),
        lambda config: serve(config, make_site),
        description="The socket gateway: live viewer counts over Socket.IO, snapshots to the ingest service.",
        variables=VARIABLES,
        # The outbox file cannot be opened, or another resource of the process cannot be had.
        start_failures={
            sqlite3.Error: "Cannot start the socket gateway",
            OSError: "Cannot start the socket gateway",
        },
    )
