"""The gateway's internal gRPC server: ``LiveCountService`` behind the internal key, and health."""

from __future__ import annotations

import logging
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from viewer_analytics.v1 import live_count_service_pb2_grpc

from service_common.grpc_tls import ServerTls, bind_server_port
from service_common.internal_auth import InternalKeyInterceptor, InternalKeyRing
from service_common.log_limits import RateLimitedLog
from service_common.service_process import listen_errors
from socket_gateway.clock import Clock
from socket_gateway.live.count_stream import LiveCountServicer, StreamLimits
from socket_gateway.live.feed import CountFeed

logger = logging.getLogger(__name__)

SERVICE_NAME = "viewer_analytics.v1.LiveCountService"
# Streams are endless: a stop gives the consumers this long to see the stream end (they reconnect
# to another node, or to this one when it is back) before the server cancels what is left.
STOP_GRACE_SECONDS = 0.5


class LiveCountServer:
    """``LiveCountService`` on ``host:port`` (port 0: any free port), TLS with ``tls``; key checked first."""

    def __init__(
        self,
        feed: CountFeed,
        limits: StreamLimits,
        keys: tuple[str, ...],
        clock: Clock,
        host: str,
        port: int,
        tls: ServerTls | None = None,
    ) -> None:
        log = RateLimitedLog(logger)
        self.servicer = LiveCountServicer(feed, limits, clock.time, time.monotonic, log)
        self._health = health.aio.HealthServicer()
        self._host = host
        self._port = port
        self._tls = tls
        self.port = 0
        self._server = grpc.aio.server(
            interceptors=[InternalKeyInterceptor(InternalKeyRing(keys), log)],
            options=[
                # gRPC's default SO_REUSEPORT lets a second server bind this port and take half the calls.
                ("grpc.so_reuseport", 0),
                # Streams live for hours; pings find a vanished consumer within a minute.
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # The whole request is a list of auction ids: 10,000 ids of 128 characters fit.
                ("grpc.max_receive_message_length", 2 * 1024 * 1024),
            ],
        )
        live_count_service_pb2_grpc.add_LiveCountServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)

    async def start(self) -> int:
        """Binds and starts serving; the bound port.

        Raises:
            service_common.service_process.ListenError: the port is in use or cannot be bound.
        """
        with listen_errors(self._host, self._port, "GATEWAY_GRPC_PORT"):
            self.port = bind_server_port(
                self._server,
                self._host,
                self._port,
                self._tls,
                plaintext_warning="The live count port listens in plaintext beyond loopback: the internal"
                " key crosses the network in the clear (set GATEWAY_GRPC_TLS_CERT_FILE and _KEY_FILE)",
            )
        await self._server.start()
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "Live count service listening",
            extra={"address": f"{self._host}:{self.port}", "port": self.port, "tls": self._tls is not None},
        )
        return self.port

    async def stop(self) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(STOP_GRACE_SECONDS)
