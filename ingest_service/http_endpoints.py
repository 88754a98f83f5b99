"""The ingest service's plain HTTP listener: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for
probes that speak no gRPC."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from ingest_service.config import MetricsListener
from service_common.connection_guard import ConnectionGuard, ConnectionLimits, GuardedSite
from service_common.http_server_log import HttpServerLog
from service_common.log_limits import RateLimitedLog
from service_common.prometheus import CONTENT_TYPE
from service_common.service_process import listen_errors

logger = logging.getLogger(__name__)

# How long a stop waits for a request being answered (a scrape takes milliseconds).
SHUTDOWN_GRACE_SECONDS = 1.0


class HttpEndpoints:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``listener``'s address from ``start`` to ``stop``.

    The connections are bounded as on the other services' HTTP ports (``ConnectionGuard``'s defaults:
    idle and partial-request timeouts, 256 per address), and what a client can make the server log
    goes through ``log``, rate-limited.

    Args:
        listener: where to listen (port 0: any free port, ``port`` says which once started).
        problems: why the service is not ready (empty: ready), as its gRPC health says.
        render_metrics: the exposition text of the service's metrics.
        log: the service's rate-limited log for lines clients can cause.
    """

    def __init__(
        self,
        listener: MetricsListener,
        problems: Callable[[], list[str]],
        render_metrics: Callable[[], str],
        log: RateLimitedLog,
    ) -> None:
        self._listener = listener
        self._problems = problems
        self._render_metrics = render_metrics
        self._log = log
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Binds and serves.

        Raises:
            service_common.service_process.ListenError: the port is in use or cannot be bound.
        """
        guard = ConnectionGuard(ConnectionLimits())
        app = web.Application()
        guard.install(app)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # No access log: a line per request, which any client could multiply.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
            access_log=None,
            logger=HttpServerLog(self._log),
            **guard.runner_options(),
        )
        await runner.setup()
        host, port = self._listener.host, self._listener.port
        try:
            with listen_errors(host, port, "INGEST_METRICS_PORT"):
                await GuardedSite(runner, host, port, guard).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Closes the listening socket and the connections, once a request being answered is."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        """Liveness: the process answers. The store is readiness's business, as on the other services."""
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Readiness, as gRPC health says it: 503 while the store cannot be written, or once a stop began."""
        problems = self._problems()
        body = {"ready": not problems, "problems": problems}
        return web.json_response(body, status=503 if problems else 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._render_metrics().encode(), headers={"Content-Type": CONTENT_TYPE})
