"""The socket gateway's configuration, read once from the environment."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from service_common.config import (
    ALLOWED_ORIGIN,
    DEFAULT_ALLOWED_ORIGIN,
    INGEST_TARGET,
    ConfigError,
    Variables,
    read_allowed_origins,
    read_bool,
    read_float,
    read_int,
    read_optional_str,
    read_port,
    read_str,
)
from service_common.connection_guard import ConnectionLimits, connection_variables
from service_common.grpc_tls import (
    CLIENT_TLS_VARIABLES,
    GATEWAY_GRPC_SERVER_TLS,
    ClientTls,
    ServerTls,
    read_client_tls,
    read_server_tls,
)
from service_common.internal_auth import INTERNAL_KEY_VARIABLES, read_internal_api_keys
from service_common.logging_setup import LOG_VARIABLES, LogSettings
from service_common.timing import TIMING_VARIABLES, SnapshotTiming

DEFAULT_OUTBOX_PATH = "data/gateway_outbox.sqlite3"
DEFAULT_SOCKETIO_PATH = "/socket.io/"
# One or more path segments of URL-safe characters, between slashes: "/socket.io/", "/auction/".
_SOCKETIO_PATH_PATTERN = re.compile(r"/(?:[A-Za-z0-9._~-]+/)+")
# HMAC secrets shorter than this are guessable offline from one captured token.
MIN_TOKEN_SECRET_LENGTH = 32

# Every variable the gateway reads (its --help lists them, with these defaults).
VARIABLES = Variables(INTERNAL_KEY_VARIABLES, TIMING_VARIABLES, LOG_VARIABLES)
_HOST = VARIABLES.declare("GATEWAY_HOST", "127.0.0.1", "address the gateway listens on")
_PORT = VARIABLES.declare("GATEWAY_PORT", "8081", "its port (0: any free port)")
_SOCKETIO_PATHS = VARIABLES.declare(
    "GATEWAY_SOCKETIO_PATHS",
    DEFAULT_SOCKETIO_PATH,
    "Socket.IO paths served, comma-separated (e.g. /socket/,/auction/); rooms and counts are shared",
)
VARIABLES.include(ALLOWED_ORIGIN, INGEST_TARGET, CLIENT_TLS_VARIABLES)
_COUNT_UPDATE_INTERVAL = VARIABLES.declare(
    "COUNT_UPDATE_INTERVAL_MS", "500", "at most one viewerCountUpdate per room per this many ms"
)
_OUTBOX_PATH = VARIABLES.declare(
    "OUTBOX_PATH", DEFAULT_OUTBOX_PATH, "the durable outbox (one file per gateway process)"
)
_OUTBOX_MAX = VARIABLES.declare("OUTBOX_MAX_SNAPSHOTS", "100000", "the outbox's cap, snapshots")
_OUTBOX_BUSY_TIMEOUT = VARIABLES.declare(
    "OUTBOX_BUSY_TIMEOUT_SECONDS",
    "5",
    "how long an outbox write waits for another process's lock on the file before it fails",
)
_SEND_BATCH = VARIABLES.declare(
    "GATEWAY_SEND_BATCH_SIZE", "500", "snapshots per batch sent to the ingest service"
)
_SHUTDOWN_FLUSH = VARIABLES.declare(
    "GATEWAY_SHUTDOWN_FLUSH_SECONDS", "5", "how long SIGTERM waits for the outbox to drain"
)
_MAX_PAYLOAD = VARIABLES.declare("GATEWAY_MAX_PAYLOAD_BYTES", "16384", "largest message a client may send")
_CONNECTIONS_PER_IP = VARIABLES.declare(
    "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE", "120", "new connections per client address per minute"
)
_MAX_QUEUED_BYTES = VARIABLES.declare(
    "GATEWAY_MAX_QUEUED_BYTES_PER_SESSION", "1048576", "bytes a session may leave unread before it is closed"
)
_MAX_QUEUED_PACKETS = VARIABLES.declare(
    "GATEWAY_MAX_QUEUED_PACKETS_PER_SESSION", "1000", "packets a session may leave unread before it is closed"
)
_CONNECT_TIMEOUT = VARIABLES.declare(
    "GATEWAY_CONNECT_TIMEOUT_SECONDS", "10", "how soon after its Engine.IO handshake a session must join"
)
VARIABLES.include(connection_variables("GATEWAY"))
_VIEWER_TOKEN_SECRET = VARIABLES.declare(
    "VIEWER_TOKEN_SECRET", "", "when set (32+ characters), connections must carry an HS256 viewer token"
)
_COMPRESSION = VARIABLES.declare(
    "GATEWAY_WEBSOCKET_COMPRESSION", "false", "permessage-deflate (about 45% more CPU per message)"
)
_PING_INTERVAL = VARIABLES.declare("GATEWAY_PING_INTERVAL_SECONDS", "25", "Engine.IO heartbeat interval")
_PING_TIMEOUT = VARIABLES.declare("GATEWAY_PING_TIMEOUT_SECONDS", "20", "Engine.IO heartbeat timeout")
_LISTEN_BACKLOG = VARIABLES.declare(
    "GATEWAY_LISTEN_BACKLOG", "4096", "connections the kernel queues for accept()"
)
_GATEWAY_ID = VARIABLES.declare(
    "GATEWAY_ID", "", "this node's id in snapshots and in Redis (unset: <hostname>-<pid>)"
)
_REDIS_URL = VARIABLES.declare(
    "REDIS_URL", "", "scale-out: several gateways as one (unset: one gateway alone)"
)
_NODE_LEASE = VARIABLES.declare(
    "GATEWAY_NODE_LEASE_SECONDS",
    "10",
    "a node's lease in Redis (a killed node's counts go within ~lease x 4/3)",
)
_REDIS_TIMEOUT = VARIABLES.declare(
    "GATEWAY_REDIS_TIMEOUT_SECONDS",
    "1",
    "a Redis call (or connect) slower than this counts as Redis down (at most 2/3 of the node lease)",
)
_REDIS_CLUSTER = VARIABLES.declare(
    "GATEWAY_REDIS_CLUSTER",
    "false",
    "true: REDIS_URL names one node of a Redis Cluster (the client finds the others and each key's shard)",
)
_REDIS_RETRIES = VARIABLES.declare(
    "GATEWAY_REDIS_RETRIES",
    "3",
    "retries of a Redis call whose connection dropped or was refused (backoff 0.1 s doubling, <= 0.5 s)",
)
_GRPC_HOST = VARIABLES.declare(
    "GATEWAY_GRPC_HOST", "127.0.0.1", "address of the internal gRPC port (LiveCountService, internal key)"
)
_GRPC_PORT = VARIABLES.declare("GATEWAY_GRPC_PORT", "50052", "its port (0: any free port)")
VARIABLES.include(GATEWAY_GRPC_SERVER_TLS.group)
_LIVE_MAX_STREAMS = VARIABLES.declare(
    "GATEWAY_LIVE_MAX_STREAMS", "1000", "live count streams open at once (WatchViewerCounts)"
)
_LIVE_MAX_AUCTIONS = VARIABLES.declare(
    "GATEWAY_LIVE_MAX_AUCTIONS_PER_STREAM", "10000", "auctions one live count stream may watch"
)
_LIVE_INTERVAL = VARIABLES.declare(
    "GATEWAY_LIVE_UPDATE_INTERVAL_MS",
    "500",
    "at most one update per auction per stream per this many ms (>= 500)",
)
_ALERT_RULES_REFRESH = VARIABLES.declare(
    "GATEWAY_ALERT_RULES_REFRESH_SECONDS",
    "5",
    "how often the evaluating node reloads the alert rules from the ingest service",
)
_ALERT_SETTLE = VARIABLES.declare(
    "GATEWAY_ALERT_SETTLE_SECONDS",
    "3",
    "how long a node that starts evaluating waits for its counts to come back before it compares them "
    "with the rules' recorded states",
)


def _read_redis_url(env: Mapping[str, str]) -> str | None:
    url = read_optional_str(env, _REDIS_URL)
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL", f"expected redis://host:port[/db], rediss:// or unix://, got {url!r}")
    return url


def _read_socketio_paths(env: Mapping[str, str]) -> tuple[str, ...]:
    paths = tuple(path.strip() for path in read_str(env, _SOCKETIO_PATHS).split(","))
    for path in paths:
        if not _SOCKETIO_PATH_PATTERN.fullmatch(path):
            raise ConfigError(
                _SOCKETIO_PATHS.name,
                f"each path must start and end with '/' and hold only letters, digits and . _ ~ - "
                f"between slashes, got {path!r}",
            )
    if len(set(paths)) != len(paths):
        raise ConfigError(_SOCKETIO_PATHS.name, f"a path is listed twice: {','.join(paths)!r}")
    return paths


def _default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# The id names the node's keys in Redis inside a hash tag ({n:<id>@<incarnation>}): braces or an "@"
# would break the tag or the incarnation; the ingest service takes at most 128 characters.
_GATEWAY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _read_gateway_id(env: Mapping[str, str]) -> str:
    gateway_id = read_str(env, _GATEWAY_ID)
    if not gateway_id:
        return _default_gateway_id()
    if not _GATEWAY_ID_PATTERN.fullmatch(gateway_id):
        raise ConfigError(
            _GATEWAY_ID.name,
            f"expected 1-100 letters, digits, '_', '.' or '-' (first a letter or digit), got {gateway_id!r}",
        )
    return gateway_id


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the socket gateway reads from its environment.

    ``allowed_origins`` may hold ``"*"`` (any origin: only for local demos).
    ``viewer_token_secret`` switches on signed viewer tokens; without it viewing is anonymous.
    """

    internal_api_keys: tuple[str, ...]
    ingest_target: str = "127.0.0.1:50051"
    host: str = "127.0.0.1"
    port: int = 8081
    # Every path serves the same Socket.IO server (one set of rooms and counts), on every transport.
    socketio_paths: tuple[str, ...] = (DEFAULT_SOCKETIO_PATH,)
    allowed_origins: tuple[str, ...] = (DEFAULT_ALLOWED_ORIGIN,)
    timing: SnapshotTiming = field(default_factory=SnapshotTiming)
    count_update_interval_ms: int = 500
    outbox_path: str = DEFAULT_OUTBOX_PATH
    outbox_max_snapshots: int = 100_000
    outbox_busy_timeout_seconds: float = 5.0
    send_batch_size: int = 500
    shutdown_flush_seconds: float = 5.0
    max_payload_bytes: int = 16 * 1024
    # What one session may leave unread (queued packets, or bytes unsent on a WebSocket), and how
    # soon after its Engine.IO handshake it must join Socket.IO (docs/socket_gateway.md, "Errors").
    max_queued_bytes_per_session: int = 1024 * 1024
    max_queued_packets_per_session: int = 1000
    connect_timeout_seconds: float = 10.0
    # Idle and partial-request timeouts and the per-address cap on open connections (all of them).
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    connections_per_ip_per_minute: int = 120
    viewer_token_secret: str | None = None
    websocket_compression: bool = False
    ping_interval_seconds: float = 25.0
    ping_timeout_seconds: float = 20.0
    # Connections the kernel holds for accept(); aiohttp's default of 128 overflowed in a connect
    # burst of 500/s (SYNs dropped, clients retrying after 1 s, 3 s, ...). Capped by somaxconn.
    listen_backlog: int = 4096
    gateway_id: str = field(default_factory=_default_gateway_id)
    # Scale-out (docs/socket_gateway.md, "Many gateways on Redis"): off without a URL.
    redis_url: str | None = None
    # REDIS_URL is one node of a Redis Cluster (redis-py's RedisCluster), not one Redis.
    redis_cluster: bool = False
    node_lease_seconds: float = 10.0
    # Separate from the heartbeat (a third of the lease): how long one Redis call may take before
    # the node counts Redis as down, and how often a call on a dropped connection is tried again.
    redis_timeout_seconds: float = 1.0
    redis_retries: int = 3
    # The internal gRPC port: live counts for the other services (docs/socket_gateway.md, "Live counts
    # over gRPC").
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50052
    # GATEWAY_GRPC_TLS_CERT_FILE and GATEWAY_GRPC_TLS_KEY_FILE: the internal port serves TLS only.
    grpc_tls: ServerTls | None = None
    live_max_streams: int = 1000
    live_max_auctions_per_stream: int = 10_000
    live_update_interval_ms: int = 500
    # Seller alerts (live/alerts.py): how soon a rule's change reaches the evaluator.
    alert_rules_refresh_seconds: float = 5.0
    # ... and how long a node that starts evaluating lets its viewers reconnect first.
    alert_settle_seconds: float = 3.0
    logging: LogSettings = field(default_factory=LogSettings)
    # INGEST_TLS_CA_FILE (and INGEST_TLS_SERVER_NAME): TLS to the ingest service; plaintext without it.
    ingest_tls: ClientTls | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewayConfig:
        """Builds the configuration from ``env``.

        Raises:
            service_common.config.ConfigError: a variable is missing or invalid (the message names it).
        """
        secret = read_optional_str(env, _VIEWER_TOKEN_SECRET)
        if secret is not None and len(secret) < MIN_TOKEN_SECRET_LENGTH:
            raise ConfigError(
                "VIEWER_TOKEN_SECRET", f"must be at least {MIN_TOKEN_SECRET_LENGTH} characters when set"
            )
        ingest_target = read_str(env, INGEST_TARGET)
        if ":" not in ingest_target:
            raise ConfigError("INGEST_TARGET", f"expected host:port, got {ingest_target!r}")
        # At most 20 s: a dead node is removed within a lease and a heartbeat (lease/3), under 30 s.
        node_lease_seconds = read_float(env, _NODE_LEASE, minimum=0.5, maximum=20.0)
        redis_timeout_seconds = read_float(env, _REDIS_TIMEOUT, minimum=0.05, maximum=30.0)
        if redis_timeout_seconds > node_lease_seconds * 2 / 3:
            # A heartbeat held up by one slow call for longer would let the node's own lease lapse
            # while it still counts itself in the cluster.
            raise ConfigError(
                "GATEWAY_REDIS_TIMEOUT_SECONDS",
                f"must be at most 2/3 of GATEWAY_NODE_LEASE_SECONDS ({node_lease_seconds:g} s), "
                f"got {redis_timeout_seconds:g}",
            )
        return cls(
            internal_api_keys=read_internal_api_keys(env),
            ingest_target=ingest_target,
            host=read_str(env, _HOST),
            port=read_port(env, _PORT),
            socketio_paths=_read_socketio_paths(env),
            allowed_origins=read_allowed_origins(env),
            timing=SnapshotTiming.from_env(env),
            count_update_interval_ms=read_int(env, _COUNT_UPDATE_INTERVAL, minimum=10, maximum=60_000),
            outbox_path=read_str(env, _OUTBOX_PATH),
            outbox_max_snapshots=read_int(env, _OUTBOX_MAX, minimum=1, maximum=100_000_000),
            outbox_busy_timeout_seconds=read_float(env, _OUTBOX_BUSY_TIMEOUT, minimum=0.0, maximum=300.0),
            send_batch_size=read_int(env, _SEND_BATCH, minimum=1, maximum=5_000),
            shutdown_flush_seconds=read_float(env, _SHUTDOWN_FLUSH, minimum=0.0, maximum=300.0),
            max_payload_bytes=read_int(env, _MAX_PAYLOAD, minimum=1024, maximum=1024 * 1024),
            max_queued_bytes_per_session=read_int(
                env,
                _MAX_QUEUED_BYTES,
                minimum=64 * 1024,
                maximum=64 * 1024 * 1024,
            ),
            max_queued_packets_per_session=read_int(env, _MAX_QUEUED_PACKETS, minimum=16, maximum=1_000_000),
            connect_timeout_seconds=read_float(env, _CONNECT_TIMEOUT, minimum=0.5, maximum=300.0),
            connections=ConnectionLimits.from_env(env, "GATEWAY"),
            connections_per_ip_per_minute=read_int(env, _CONNECTIONS_PER_IP, minimum=1, maximum=1_000_000),
            viewer_token_secret=secret,
            websocket_compression=read_bool(env, _COMPRESSION),
            ping_interval_seconds=read_float(env, _PING_INTERVAL, minimum=1, maximum=300),
            ping_timeout_seconds=read_float(env, _PING_TIMEOUT, minimum=1, maximum=300),
            listen_backlog=read_int(env, _LISTEN_BACKLOG, minimum=16, maximum=65_535),
            gateway_id=_read_gateway_id(env),
            redis_url=_read_redis_url(env),
            redis_cluster=read_bool(env, _REDIS_CLUSTER),
            node_lease_seconds=node_lease_seconds,
            redis_timeout_seconds=redis_timeout_seconds,
            redis_retries=read_int(env, _REDIS_RETRIES, minimum=0, maximum=10),
            grpc_host=read_str(env, _GRPC_HOST),
            grpc_port=read_port(env, _GRPC_PORT),
            grpc_tls=read_server_tls(env, GATEWAY_GRPC_SERVER_TLS),
            live_max_streams=read_int(env, _LIVE_MAX_STREAMS, minimum=1, maximum=100_000),
            live_max_auctions_per_stream=read_int(env, _LIVE_MAX_AUCTIONS, minimum=1, maximum=100_000),
            # At least 500 ms: the contract promises at most two updates a second per auction.
            live_update_interval_ms=read_int(env, _LIVE_INTERVAL, minimum=500, maximum=60_000),
            alert_rules_refresh_seconds=read_float(env, _ALERT_RULES_REFRESH, minimum=0.05, maximum=3600.0),
            alert_settle_seconds=read_float(env, _ALERT_SETTLE, minimum=0.0, maximum=60.0),
            logging=LogSettings.from_env(env),
            ingest_tls=read_client_tls(env),
        )

    @property
    def internal_api_key(self) -> str:
        """The key this gateway sends: the first configured one (the others are for rotation)."""
        return self.internal_api_keys[0]
