"""Building the ingest service's gRPC server from its configuration and dependencies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from viewer_analytics.v1 import (
    alert_rule_service_pb2,
    alert_rule_service_pb2_grpc,
    auction_audience_service_pb2,
    auction_audience_service_pb2_grpc,
    auction_event_service_pb2,
    auction_event_service_pb2_grpc,
    auction_settings_service_pb2,
    auction_settings_service_pb2_grpc,
    snapshot_ingest_service_pb2,
    snapshot_ingest_service_pb2_grpc,
    viewer_analytics_service_pb2,
    viewer_analytics_service_pb2_grpc,
)

from ingest_service.alerts.sender import WebhookSender, client_ssl_context
from ingest_service.alerts.store import AlertStore
from ingest_service.alerts.targets import HostResolver, SystemResolver
from ingest_service.analytics_flags import AnalyticsFlagCache
from ingest_service.auction_events import AuctionEventRecorder, EventRules
from ingest_service.config import IngestConfig
from ingest_service.domain import StorageUnavailable
from ingest_service.grpc_api.alert_rules import AlertRuleServicer
from ingest_service.grpc_api.auction_events import AuctionAudienceServicer, AuctionEventServicer
from ingest_service.grpc_api.auction_settings import AuctionSettingsServicer
from ingest_service.grpc_api.guards import (
    BoundedHealthServicer,
    MalformedRequestInterceptor,
    UnauthenticatedCallLimiter,
)
from ingest_service.grpc_api.snapshot_ingest import SnapshotIngestServicer
from ingest_service.grpc_api.viewer_analytics import ViewerAnalyticsServicer
from ingest_service.http_endpoints import HttpEndpoints
from ingest_service.ingestion import SnapshotIngestor
from ingest_service.metrics import CallMetricsInterceptor, IngestMetrics, ServerState
from ingest_service.storage.event_port import AuctionEventStore
from ingest_service.storage.port import SnapshotStore
from ingest_service.store_health import WRITE_CHECK_TASK, HealthReporter, StoreWriteCheck
from ingest_service.validation import SnapshotRules
from service_common.grpc_tls import bind_server_port
from service_common.internal_auth import InternalKeyInterceptor, InternalKeyRing
from service_common.log_limits import RateLimitedLog
from service_common.service_process import listen_errors
from service_common.supervision import Supervisor, TaskHealth

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    snapshot_ingest_service_pb2.DESCRIPTOR.services_by_name["SnapshotIngestService"].full_name,
    auction_settings_service_pb2.DESCRIPTOR.services_by_name["AuctionSettingsService"].full_name,
    viewer_analytics_service_pb2.DESCRIPTOR.services_by_name["ViewerAnalyticsService"].full_name,
    auction_event_service_pb2.DESCRIPTOR.services_by_name["AuctionEventService"].full_name,
    auction_audience_service_pb2.DESCRIPTOR.services_by_name["AuctionAudienceService"].full_name,
    alert_rule_service_pb2.DESCRIPTOR.services_by_name["AlertRuleService"].full_name,
)

MAX_CONCURRENT_STREAMS_PER_CONNECTION = 256
# How often the store is probed for writes while nothing fails (a failed write is seen at once).
WRITE_CHECK_INTERVAL_SECONDS = 5.0


class IngestServer:
    """The gRPC server with its servicers, and the HTTP listener for ``/metrics`` and the probes beside it
    (unless it is off); ``start`` serves both, ``stop`` drains and stops them."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: BoundedHealthServicer,
        snapshot_servicer: SnapshotIngestServicer,
        port: int,
        supervisor: Supervisor,
        write_check: StoreWriteCheck,
        sender: WebhookSender | None = None,
        *,
        metrics: IngestMetrics,
        flags: AnalyticsFlagCache,
        client_log: RateLimitedLog,
        config: IngestConfig,
    ) -> None:
        self._server = server
        self._health = health_servicer
        self._snapshot_servicer = snapshot_servicer
        self.port = port
        self._supervisor = supervisor
        self._write_check = write_check
        self.sender = sender
        self.metrics = metrics
        self._flags = flags
        self._client_log = client_log
        self._health_reporter = HealthReporter(
            health_servicer, ("", *SERVICE_NAMES), supervisor, needed=(WRITE_CHECK_TASK,)
        )
        self._serving = False
        self._http = (
            None
            if config.metrics is None
            else HttpEndpoints(config.metrics, self.readiness_problems, self.render_metrics, client_log)
        )

    @property
    def metrics_port(self) -> int | None:
        """The port of ``/metrics`` once started (None: the HTTP listener is off)."""
        return None if self._http is None else self._http.port

    async def start(self) -> None:
        """Serves, reporting SERVING, and starts the supervised tasks (the store's write check).

        From then on health follows the tasks: NOT_SERVING while the store cannot be written.

        Raises:
            service_common.service_process.ListenError: the HTTP port is in use (nothing serves then).
        """
        if self._http is not None:
            await self._http.start()
        try:
            await self._server.start()
        except BaseException:
            if self._http is not None:
                await self._http.stop()
            raise
        for service in ("", *SERVICE_NAMES):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._serving = True
        self._supervisor.start(WRITE_CHECK_TASK, self._write_check.run)
        self._supervisor.start("health-reporter", self._health_reporter.run)
        if self.sender is not None:
            self._supervisor.start("alert-webhook-sender", self.sender.run)

    def readiness_problems(self) -> list[str]:
        """Why gRPC health says NOT_SERVING now (empty while it says SERVING), for ``/readyz``."""
        if not self._serving:
            return ["not serving (starting or stopping)"]
        if self._health_reporter.serving:
            return []
        failing = self._health_reporter.failing()
        # Health changes every HealthReporter interval: a task may have recovered since, not yet reported.
        return [f"background task {task.name} failing ({task.last_error})" for task in failing] or [
            "a needed task was failing a moment ago"
        ]

    def render_metrics(self) -> str:
        """The ``/metrics`` text: the counters, and what the parts hold now."""
        return self.metrics.render(
            ServerState(
                serving=not self.readiness_problems(),
                tasks=self._supervisor.health(),
                flag_lookups=self._flags.lookups,
                log_lines_suppressed=self._client_log.suppressed_total,
                alert_attempts=self.sender.attempts if self.sender is not None else {},
            )
        )

    def background_health(self) -> list[TaskHealth]:
        """The supervised tasks of the server: failures counted, the last error, whether one backs off."""
        return self._supervisor.health()

    async def stop(self, grace_seconds: float) -> None:
        """Reports NOT_SERVING, lets in-flight batches finish within ``grace_seconds``, then stops.

        Health turns NOT_SERVING first so load balancers stop routing here while streams drain;
        ``/readyz`` says so until the gRPC server has stopped, then the HTTP listener closes.
        """
        self._serving = False
        await self._health.enter_graceful_shutdown()
        await self._supervisor.stop()
        self._snapshot_servicer.start_draining()
        await self._server.stop(grace_seconds)
        if self._http is not None:
            await self._http.stop()
        logger.info("Ingest service stopped")


def create_ingest_server(
    config: IngestConfig,
    store: SnapshotStore,
    clock: Callable[[], float] = time.time,
    *,
    event_store: AuctionEventStore | None = None,
    supervisor: Supervisor | None = None,
    write_check_interval_seconds: float = WRITE_CHECK_INTERVAL_SECONDS,
    alert_store: AlertStore | None = None,
    resolver: HostResolver | None = None,
) -> IngestServer:
    """Builds the server on ``store`` and binds it to the configured address (port 0: any free port).

    The port serves TLS only when ``config.tls`` is set, plaintext otherwise. ``supervisor`` runs the
    server's long-lived tasks (tests pass one with short backoffs); ``write_check_interval_seconds``
    is how often the store is probed for writes while nothing fails. ``event_store`` (beside
    ``store``, from ``storage.factory.open_event_store``) serves the auction events' two services;
    without one they answer ``UNIMPLEMENTED``. ``alert_store`` (from ``storage.factory.open_alert_store``)
    holds the alert rules and the queue of their webhook deliveries, which this server's sender sends
    (``resolver`` resolves the endpoints' host names: the system's when None).

    ``config.metrics`` places the HTTP listener of ``/metrics``, ``/healthz`` and ``/readyz`` (bound by
    ``start``; None: none).

    Raises:
        service_common.service_process.ListenError: the port is in use or cannot be bound.
    """
    metrics = IngestMetrics()
    flags = AnalyticsFlagCache(store, max_age_seconds=config.flag_cache_seconds, clock=clock)
    rules = SnapshotRules(
        snapshot_interval_seconds=config.timing.snapshot_interval_seconds,
        max_samples=config.timing.max_samples_per_snapshot,
        retention_seconds=config.retention_days * 86_400,
        auction_id_type=config.mongodb.auction_id_type,
    )
    # One table of causes for every line a client can make this server write.
    client_log = RateLimitedLog(logger)
    write_check = StoreWriteCheck(store, write_check_interval_seconds)

    def write_failed(error: StorageUnavailable) -> None:
        metrics.store_write_failures.inc()
        write_check.write_failed(error)

    snapshot_servicer = SnapshotIngestServicer(
        SnapshotIngestor(store, flags, rules, clock, metrics), client_log, write_failed, metrics
    )
    health_servicer = BoundedHealthServicer(("", *SERVICE_NAMES), client_log)

    server = grpc.aio.server(
        interceptors=[
            # Outermost, so that every call is counted with the code it ends with, refusals included.
            CallMetricsInterceptor(metrics),
            # The key is checked next: a call without one never reaches a parser or a servicer.
            InternalKeyInterceptor(
                InternalKeyRing(config.internal_api_keys), client_log, refused=metrics.refused
            ),
            UnauthenticatedCallLimiter(client_log),
            MalformedRequestInterceptor(client_log),
        ],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # Streams one connection may hold open at once: the GraphQL API's channel carries its
            # concurrent queries; more than this wait for a free stream instead of costing memory.
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS_PER_CONNECTION),
            # gRPC's default SO_REUSEPORT lets a second server bind this port and take half the calls.
            ("grpc.so_reuseport", 0),
            # Gateways hold one stream open for hours; pings find a vanished peer within a minute.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    snapshot_ingest_service_pb2_grpc.add_SnapshotIngestServiceServicer_to_server(snapshot_servicer, server)
    auction_settings_service_pb2_grpc.add_AuctionSettingsServiceServicer_to_server(
        AuctionSettingsServicer(
            store, flags, clock, client_log, write_failed, config.mongodb.auction_id_type
        ),
        server,
    )
    viewer_analytics_service_pb2_grpc.add_ViewerAnalyticsServiceServicer_to_server(
        ViewerAnalyticsServicer(
            store, config.timing.snapshot_interval_seconds, client_log, config.mongodb.auction_id_type
        ),
        server,
    )
    if event_store is not None:
        recorder = AuctionEventRecorder(
            event_store,
            flags,
            EventRules(
                retention_seconds=config.retention_days * 86_400,
                auction_id_type=config.mongodb.auction_id_type,
            ),
            clock,
        )
        auction_event_service_pb2_grpc.add_AuctionEventServiceServicer_to_server(
            AuctionEventServicer(recorder, client_log, write_failed, metrics), server
        )
        auction_audience_service_pb2_grpc.add_AuctionAudienceServiceServicer_to_server(
            AuctionAudienceServicer(
                event_store, store, config.timing, client_log, config.mongodb.auction_id_type
            ),
            server,
        )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )

    sender = None
    if alert_store is not None:
        sender = WebhookSender(
            alert_store,
            config.alerts.policy,
            config.alerts.delivery,
            clock=clock,
            resolver=resolver or SystemResolver(),
            ssl_context=client_ssl_context(config.alerts.ca_file),
            log=client_log,
        )
        alert_rule_service_pb2_grpc.add_AlertRuleServiceServicer_to_server(
            AlertRuleServicer(
                alert_store,
                config.alerts.policy,
                clock,
                client_log,
                sender.wake,
                config.mongodb.auction_id_type,
            ),
            server,
        )

    with listen_errors(config.host, config.port, "INGEST_PORT"):
        port = bind_server_port(server, config.host, config.port, config.tls)
    return IngestServer(
        server,
        health_servicer,
        snapshot_servicer,
        port,
        supervisor or Supervisor(expected_errors=(StorageUnavailable,)),
        write_check,
        sender,
        metrics=metrics,
        flags=flags,
        client_log=client_log,
        config=config,
    )
