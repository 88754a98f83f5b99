"""Building the gateway's aiohttp application (Socket.IO, probes, metrics) from config and dependencies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import hdrs, web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service_common import prometheus
from service_common.connection_guard import ConnectionGuard
from service_common.grpc_tls import open_channel
from service_common.supervision import Supervisor
from socket_gateway.clock import Clock, SystemClock
from socket_gateway.cluster.node import ClusterNode, redis_client
from socket_gateway.cluster.outage import OutageBuffer
from socket_gateway.cluster.relay import CountRelay
from socket_gateway.cluster.sampling import ClusterSampling
from socket_gateway.cluster.sketches import ClusterSketches, SketchedSampling
from socket_gateway.cluster.store import RedisCounts
from socket_gateway.config import GatewayConfig
from socket_gateway.live.alerts import AlertService
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.count_server import LiveCountServer
from socket_gateway.live.count_stream import StreamLimits
from socket_gateway.live.delivery import CountDelivery
from socket_gateway.live.events import ViewerEvents
from socket_gateway.live.fanout import RoomFanout
from socket_gateway.live.feed import ClusterCountPoller, CountFeed, FeedingRoomChanges
from socket_gateway.live.protocol import ViewerTokenVerifier
from socket_gateway.live.room_index import IndexedManager
from socket_gateway.live.rooms import RoomRegistry
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.snapshots.aggregation import SampleSchedule, SnapshotAggregator
from socket_gateway.snapshots.outbox import Outbox
from socket_gateway.snapshots.sampler import LocalSampling, Sampler, SamplingStrategy
from socket_gateway.snapshots.seen_viewers import SeenViewers
from socket_gateway.snapshots.sender import Backoff, SnapshotSender
from socket_gateway.transport import library_internals as internals
from socket_gateway.transport.engineio_websockets import EngineIOWebSockets
from socket_gateway.transport.handover import WebSocketEndpoint
from socket_gateway.transport.malformed_frames import MalformedFrameLog, guard_malformed_frames
from socket_gateway.transport.ratelimit import ConnectionRateLimiter, HandshakeAdmission
from socket_gateway.transport.session_guard import SessionGuard, SessionLimits
from socket_gateway.transport.websocket import WebSocketSession

logger = logging.getLogger(__name__)

INGEST_HEALTH_SERVICE = "viewer_analytics.v1.SnapshotIngestService"
# A readiness probe must answer quickly even when the ingest service hangs.
READINESS_TIMEOUT_SECONDS = 1.0


@dataclass
class Gateway:
    """Every part of one gateway; the resources are filled in by the app's cleanup contexts."""

    config: GatewayConfig
    sio: internals.SocketIOServer
    registry: RoomRegistry
    broadcaster: CountBroadcaster
    events: ViewerEvents
    fanout: RoomFanout
    websockets: WebSocketEndpoint
    metrics: GatewayMetrics
    clock: Clock
    backoff: Backoff
    # Every long-lived task of the gateway runs under it: a failure is logged, counted, retried, and
    # keeps /readyz off while it lasts.
    supervisor: Supervisor
    # Who was seen in each room this interval: the snapshots' unique-viewer sketches (with REDIS_URL,
    # this node's share of them).
    seen_viewers: SeenViewers
    outbox: Outbox | None = None
    channel: grpc.aio.Channel | None = None
    sender: SnapshotSender | None = None
    sampler: Sampler | None = None
    # Only with REDIS_URL: this node's part in the cluster of gateways.
    cluster: ClusterNode | None = None
    # Live counts for the other services: every change (live/feed.py), served on the internal gRPC port.
    feed: CountFeed | None = None
    live_counts: LiveCountServer | None = None
    # Seller alerts evaluated on the feed (live/alerts.py), on one node of a cluster.
    alerts: AlertService | None = None

    def require_outbox(self) -> Outbox:
        assert self.outbox is not None, "the outbox is opened when the app starts"
        return self.outbox

    def require_sender(self) -> SnapshotSender:
        assert self.sender is not None, "the sender is created when the app starts"
        return self.sender

    def require_sampler(self) -> Sampler:
        assert self.sampler is not None, "the sampler is created when the app starts"
        return self.sampler


GATEWAY = web.AppKey("gateway", Gateway)


class GatewaySite(web.BaseSite):
    """The gateway on host:port: new WebSocket sessions by websocket_transport, the rest by aiohttp."""

    __slots__ = ("_host", "_port")

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        runner = self._runner
        assert isinstance(runner, web.AppRunner)
        assert runner.server is not None
        endpoint = runner.app[GATEWAY].websockets
        self._server = await asyncio.get_running_loop().create_server(
            lambda: endpoint.protocol(runner.server),  # type: ignore[arg-type]
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )


def create_app(
    config: GatewayConfig,
    *,
    clock: Clock | None = None,
    backoff: Backoff | None = None,
) -> web.Application:
    """The gateway as an aiohttp application; resources open when it starts and close when it stops.

    Raises:
        LibraryVersionError: python-engineio or python-socketio is not the version the gateway's
            transport was written for (a configuration error: the process exits 2 with one line).
    """
    internals.check_library_versions()
    metrics = GatewayMetrics()
    registry = RoomRegistry()
    sio = internals.SocketIOServer(
        async_mode="aiohttp",
        # "*" must reach Engine.IO as the string, not inside a list, to mean any origin.
        cors_allowed_origins="*" if "*" in config.allowed_origins else list(config.allowed_origins),
        max_http_buffer_size=config.max_payload_bytes,
        http_compression=config.websocket_compression,
        ping_interval=config.ping_interval_seconds,
        ping_timeout=config.ping_timeout_seconds,
        # Logger objects, not False: given False, each library attaches its own plain-text stderr
        # handler for its errors, beside the JSON lines every other record gets.
        logger=_library_logger("socketio.server"),
        engineio_logger=_library_logger("engineio.server"),
        # Room emits stay on this node; with REDIS_URL the cluster's relay carries count updates
        # between the nodes, each only to the nodes with sockets in the room.
        client_manager=IndexedManager(),
    )

    malformed_frames = MalformedFrameLog()
    engineio_websockets = EngineIOWebSockets(
        sio.eio, compress=config.websocket_compression, malformed_frames=malformed_frames
    )
    guard_malformed_frames(sio, malformed_frames, close_websocket=engineio_websockets.close)
    fanout = RoomFanout(sio.eio, engineio_websockets)
    admit = HandshakeAdmission(
        ConnectionRateLimiter(config.connections_per_ip_per_minute),
        metrics,
        lambda request: internals.cors_headers(sio.eio, request),
    )
    sessions = SessionGuard(
        sio,
        SessionLimits(
            config.max_queued_bytes_per_session,
            config.max_queued_packets_per_session,
            config.connect_timeout_seconds,
        ),
        malformed_frames,
        metrics,
        engineio_websockets,
    )
    websockets = WebSocketEndpoint(
        sio.eio,
        socketio_paths=config.socketio_paths,
        admit=admit,
        malformed_frames=malformed_frames,
        metrics=metrics,
        serve_deflate_elsewhere=config.websocket_compression,
        max_unsent_bytes=config.max_queued_bytes_per_session,
        connections=ConnectionGuard(
            config.connections, on_refused=lambda reason: metrics.connections_refused.update((reason,))
        ),
    )
    metrics.rate_limited_logs["connections"] = websockets.connections.refusal_log

    delivery = CountDelivery(sio, fanout, metrics)
    broadcaster = CountBroadcaster(registry, delivery.emit_to_room, config.count_update_interval_ms / 1000)
    cluster = None
    if config.redis_url:
        # No I/O here: the client connects on first use, in the cluster's cleanup context.
        client = redis_client(
            config.redis_url, config.redis_timeout_seconds, config.redis_retries, config.redis_cluster
        )
        cluster = ClusterNode(
            RedisCounts(client, config.gateway_id, config.node_lease_seconds),
            registry,
            CountRelay(
                client, config.gateway_id, registry, delivery.emit_to_room, delivery.emit_relayed, metrics
            ),
            broadcaster,
            config.count_update_interval_ms / 1000,
            config.node_lease_seconds,
            (clock or SystemClock()).time,
        )
    verifier = ViewerTokenVerifier(config.viewer_token_secret) if config.viewer_token_secret else None
    seen_viewers = SeenViewers(registry, verified_ids=verifier is not None)
    events = ViewerEvents(
        sio,
        registry,
        # Alone, the feed hears every change with the registry's exact counts; with Redis it polls.
        cluster or FeedingRoomChanges(broadcaster, delivery.feed, registry.counts),
        metrics,
        verifier,
        delivery.send_to,
        counts_of=cluster.counts if cluster else registry.counts,
        forget_counts_sent=delivery.forget_sent,
    )
    events.register()
    gateway = Gateway(
        config=config,
        sio=sio,
        registry=registry,
        broadcaster=broadcaster,
        events=events,
        fanout=fanout,
        websockets=websockets,
        metrics=metrics,
        clock=clock or SystemClock(),
        backoff=backoff or Backoff(),
        supervisor=Supervisor(),
        cluster=cluster,
        feed=delivery.feed,
        seen_viewers=seen_viewers,
    )

    app = web.Application(
        middlewares=[
            admit.middleware(config.socketio_paths),
        ]
    )
    # The partial-request timeout; the idle timeout is the runner's (runner_options()).
    websockets.connections.install(app)
    app[GATEWAY] = gateway
    for path in config.socketio_paths:
        # One route per path, all to the same Engine.IO server: one socket table, one set of rooms.
        sio.attach(app, socketio_path=path.strip("/"))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.cleanup_ctx.append(_outbox_ctx)
    app.cleanup_ctx.append(_sender_ctx)
    if cluster is not None:
        app.cleanup_ctx.append(_cluster_ctx)
    app.cleanup_ctx.append(_sampler_ctx)
    app.cleanup_ctx.append(_live_counts_ctx)
    app.cleanup_ctx.append(_alerts_ctx)
    app.on_shutdown.append(_close_interval_and_flush)

    async def stop_session_guard(app: web.Application) -> None:
        sessions.close()

    app.on_cleanup.append(stop_session_guard)
    return app


def _library_logger(name: str) -> logging.Logger:
    """python-socketio's or python-engineio's logger, quiet below WARNING (they log every packet at INFO)."""
    library_logger = logging.getLogger(name)
    if library_logger.level == logging.NOTSET:
        library_logger.setLevel(logging.WARNING)
    return library_logger


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    outbox = gateway.require_outbox()
    problems = []
    if gateway.cluster is not None and not gateway.cluster.ready:
        problems.append("redis unreachable (serving local counts only)")
    if gateway.cluster is not None and not gateway.cluster.relay.listening:
        problems.append("not receiving other nodes' updates (Redis pub/sub not subscribed)")
    if outbox.full:
        problems.append(f"outbox at its cap ({outbox.max_snapshots})")
    if outbox.write_error is not None:
        problems.append(
            f"outbox cannot be written ({outbox.write_error}); {outbox.pending} snapshots kept in memory"
        )
    if gateway.sender is not None and gateway.sender.interval_mismatch is not None:
        problems.append(gateway.sender.interval_mismatch)
    problems.extend(
        f"background task {task.name} failing ({task.last_error})" for task in gateway.supervisor.unhealthy()
    )
    try:
        health = health_pb2_grpc.HealthStub(gateway.channel)
        answer = await health.Check(
            health_pb2.HealthCheckRequest(service=INGEST_HEALTH_SERVICE), timeout=READINESS_TIMEOUT_SECONDS
        )
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            problems.append("ingest service not serving")
    except grpc.aio.AioRpcError as error:
        problems.append(f"ingest service unreachable ({error.code().name})")
    body = {"ready": not problems, "problems": problems, "outboxDepth": outbox.depth}
    return web.json_response(body, status=200 if not problems else 503)


async def _metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    outbox = gateway.require_outbox()
    sender = gateway.require_sender()
    cluster_gauges = {}
    if gateway.cluster is not None:
        cluster = gateway.cluster
        cluster_gauges = {
            "gateway_redis_ready": (
                "1 while this node's counts are in Redis (REDIS_URL).",
                lambda: int(cluster.ready),
            ),
            "gateway_cluster_live_nodes": (
                "Live gateway nodes at the last heartbeat.",
                lambda: cluster.live_nodes,
            ),
            "gateway_sampler_leader": (
                "1 while this node holds the coordinator lease (it evaluates the seller alerts).",
                lambda: int(bool(cluster.sampler.token)),
            ),
            "gateway_sampling_owned_rooms": (
                "Rooms whose sampling this node owns.",
                lambda: len(cluster.sampler.owned),
            ),
        }
    text = gateway.metrics.render(
        gateway.supervisor.health(),
        {
            **cluster_gauges,
            "gateway_connections": ("Connected Socket.IO clients.", lambda: gateway.events.connections),
            "gateway_rooms": ("Auction rooms with at least one socket.", lambda: gateway.registry.room_count),
            "gateway_room_members": ("Sockets in an auction room.", lambda: gateway.registry.member_count),
            "gateway_tcp_connections": (
                "Open TCP connections (every kind: WebSocket sessions, polling, probes).",
                lambda: gateway.websockets.connections.open_connections,
            ),
            "gateway_websocket_sessions": (
                "WebSocket sessions count updates can be written into directly.",
                lambda: gateway.fanout.websocket_sessions,
            ),
            "gateway_live_count_streams": (
                "LiveCountService streams open (the GraphQL API's subscriptions read them).",
                lambda: gateway.live_counts.servicer.open_streams if gateway.live_counts else 0,
            ),
            "gateway_live_count_updates_sent": (
                "Auction updates written to LiveCountService streams since start.",
                lambda: gateway.live_counts.servicer.updates_sent_total if gateway.live_counts else 0,
            ),
            "gateway_outbox_depth": ("Snapshots waiting for acknowledgement.", lambda: outbox.depth),
            "gateway_outbox_capacity": ("The outbox's cap.", lambda: outbox.max_snapshots),
            "gateway_outbox_pending": (
                "Of the outbox's snapshots, those kept in memory because the file has not accepted them yet.",
                lambda: outbox.pending,
            ),
            "gateway_ingest_connected": (
                "1 while the snapshot stream has delivered since it last failed.",
                lambda: int(sender.connected),
            ),
            "gateway_snapshot_interval_seconds": (
                "This gateway's SNAPSHOT_INTERVAL_SECONDS.",
                lambda: sender.snapshot_interval_seconds,
            ),
            "gateway_ingest_snapshot_interval_seconds": (
                "The ingest service's SNAPSHOT_INTERVAL_SECONDS, from its last answer (0: not said yet).",
                lambda: sender.ingest_snapshot_interval_seconds,
            ),
            "gateway_snapshot_interval_mismatch": (
                "1 while the two differ (the ingest service rejects this gateway's snapshots).",
                lambda: int(sender.interval_mismatch is not None),
            ),
        },
    )
    return web.Response(body=text.encode(), headers={hdrs.CONTENT_TYPE: prometheus.CONTENT_TYPE})


async def _outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    gateway.outbox = await Outbox.open(
        gateway.config.outbox_path,
        gateway.config.outbox_max_snapshots,
        gateway.metrics,
        busy_timeout_seconds=gateway.config.outbox_busy_timeout_seconds,
    )
    gateway.supervisor.start("outbox-writer", gateway.outbox.run_writer)
    yield
    # After the sampler and the sender stopped (cleanup runs in reverse): what the last interval
    # closed is written before the file is.
    await gateway.supervisor.stop_task("outbox-writer")
    await gateway.outbox.close()


async def _sender_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    config = gateway.config
    gateway.channel = open_channel(
        config.ingest_target,
        config.ingest_tls,
        options=[
            # Pings find a vanished ingest service while the stream idles between intervals; the
            # ingest service accepts pings every 10 s or more.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Reconnects are paced by the sender's own backoff, not grpc's (which can reach 120 s).
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", int(gateway.backoff.maximum_seconds * 1000)),
        ],
    )
    gateway.sender = SnapshotSender(
        gateway.channel,
        gateway.require_outbox(),
        config.internal_api_key,
        gateway.metrics,
        batch_size=config.send_batch_size,
        backoff=gateway.backoff,
        snapshot_interval_seconds=config.timing.snapshot_interval_seconds,
    )
    gateway.supervisor.start("snapshot-sender", gateway.sender.run)
    yield
    await gateway.supervisor.stop_task("snapshot-sender")
    await gateway.channel.close()


async def _cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    cluster = gateway.cluster
    assert cluster is not None
    await cluster.start(gateway.supervisor)
    yield
    # Normally already left in on_shutdown; this covers a start-up that failed after this point.
    await cluster.close()
    await cluster.store.client.aclose()


async def _sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    schedule = SampleSchedule(gateway.config.timing)
    cluster = gateway.cluster
    strategy: SamplingStrategy = LocalSampling(gateway.registry)
    if cluster is not None:
        # With REDIS_URL each node samples the rooms it owns, their minutes kept in Redis; every node's
        # share of the unique-viewer sketches is merged into what the owner closes.
        sketches = ClusterSketches(
            cluster.store.client,
            gateway.config.gateway_id,
            gateway.seen_viewers,
            schedule,
            cluster.health,
            cluster.store.prefix,
        )
        owned = ClusterSampling(
            cluster.sampler,
            cluster.store,
            cluster.health,
            schedule,
            gateway.config.gateway_id,
            cluster.publisher.interval_ms,
            cluster.publisher.tell,
            # A Redis outage loses no minute: the node's own samples meanwhile, handed over after.
            OutageBuffer(
                cluster.store,
                gateway.registry,
                schedule,
                gateway.config.gateway_id,
                gateway.config.node_lease_seconds,
            ),
        )
        strategy = SketchedSampling(owned, sketches)
    gateway.sampler = Sampler(
        strategy,
        # Alone, the aggregator closes the intervals of the sketches too.
        SnapshotAggregator(
            schedule, gateway.config.gateway_id, gateway.seen_viewers if cluster is None else None
        ),
        schedule,
        gateway.require_outbox(),
        gateway.clock,
        gateway.metrics,
    )
    gateway.supervisor.start("sampler", gateway.sampler.run)
    yield
    await gateway.supervisor.stop_task("sampler")


async def _live_counts_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    config = gateway.config
    feed = gateway.feed
    assert feed is not None
    if gateway.cluster is not None:
        poller = ClusterCountPoller(gateway.cluster, feed, config.live_update_interval_ms / 1000)
        gateway.supervisor.start("live-count-poller", poller.run)
    gateway.live_counts = LiveCountServer(
        feed,
        StreamLimits(
            config.live_max_streams,
            config.live_max_auctions_per_stream,
            config.live_update_interval_ms / 1000,
        ),
        config.internal_api_keys,
        gateway.clock,
        config.grpc_host,
        config.grpc_port,
        config.grpc_tls,
    )
    await gateway.live_counts.start()
    yield
    await gateway.live_counts.stop()
    if gateway.cluster is not None:
        await gateway.supervisor.stop_task("live-count-poller")


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    assert gateway.channel is not None
    assert gateway.feed is not None
    cluster = gateway.cluster
    gateway.alerts = AlertService(
        gateway.channel,
        gateway.config.internal_api_key,
        gateway.feed,
        # One evaluator per auction: alone, this node; with Redis, the coordinator lease holder.
        (lambda: bool(cluster.sampler.token)) if cluster is not None else (lambda: True),
        gateway.config.alert_rules_refresh_seconds,
        settle_seconds=gateway.config.alert_settle_seconds,
    )
    gateway.supervisor.start("alert-rules", gateway.alerts.run_rules)
    gateway.supervisor.start("alert-reports", gateway.alerts.run_reports)
    yield
    await gateway.supervisor.stop_task("alert-reports")
    await gateway.supervisor.stop_task("alert-rules")


async def _close_interval_and_flush(app: web.Application) -> None:
    """Shutdown, while sockets are still connected: the partial interval, a bounded flush, then Socket.IO.

    Runs in aiohttp's on_shutdown, after the listener closed and before open connections are
    closed, so the partial interval's last sample still sees every viewer.
    """
    gateway = app[GATEWAY]
    outbox = gateway.require_outbox()
    gateway.require_sampler().finish()
    gateway.require_sender().retry_now()
    deadline = gateway.config.shutdown_flush_seconds
    try:
        await asyncio.wait_for(outbox.wait_until_empty(), timeout=deadline)
        logger.info("Outbox flushed")
    except TimeoutError:
        logger.warning(
            "Outbox not flushed within the deadline; kept for the next start",
            extra={"outbox_depth": outbox.depth, "deadline_seconds": deadline},
        )
    if gateway.cluster is not None:
        # Taken back now, not at lease expiry: the other nodes' counts drop at once.
        await gateway.cluster.close()
    await gateway.broadcaster.close()
    await gateway.sio.shutdown()
    # Long-polling connections kept between requests close now, and each pending poll's answer below
    # closes its own.
    gateway.websockets.stop_keeping_alive()
    # Closing the sockets now lets the web server stop at once instead of waiting for every
    # WebSocket handler until its shutdown timeout. Not with eio.disconnect(): it waits until each
    # socket's CLOSE packet is taken, and a polling client between two polls (or gone without a
    # word) never takes it, so a stop would hang until that client's ping timeout.
    eio = gateway.sio.eio
    sockets = internals.take_all_sockets(eio)
    await asyncio.gather(*(_close_for_reconnect(eio, socket) for socket in sockets), return_exceptions=True)


async def _close_for_reconnect(eio: internals.EngineIOServer, socket: Any) -> None:
    """Ends a session at a stop so that its client reconnects (in a rolling deploy, to another node).

    Without Engine.IO's CLOSE packet or Socket.IO's DISCONNECT: python-socketio's client reads
    either as "server disconnect" and socket.io-client the second as "io server disconnect", and
    neither reconnects after that. A session whose connection just ends is to both a lost
    transport ("transport error", "transport close"), which they reconnect from, as after a crash.
    A WebSocket is closed with a close frame; a pending long-poll is answered with a NOOP, and the
    next one finds the session gone.
    """
    await internals.close_session(socket, abort=True, reason=eio.reason.SERVER_DISCONNECT)
    if not isinstance(socket, WebSocketSession):
        # python-engineio's own session: end its pending long-poll (or its WebSocket writer, which
        # then closes the WebSocket), which abort leaves waiting until the ping timeout.
        internals.end_pending_poll(socket)
