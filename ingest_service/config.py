"""The ingest service's configuration, read once from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ingest_service.alerts.config import ALERT_VARIABLES, AlertSettings
from ingest_service.domain import AuctionIdType
from service_common.config import (
    RETENTION_DAYS,
    ConfigError,
    Variables,
    read_choice,
    read_float,
    read_int,
    read_optional_str,
    read_port,
    read_str,
)
from service_common.grpc_tls import SERVER_TLS_VARIABLES, ServerTls, read_server_tls
from service_common.internal_auth import INTERNAL_KEY_VARIABLES, read_internal_api_keys
from service_common.logging_setup import LOG_VARIABLES, LogSettings
from service_common.timing import TIMING_VARIABLES, SnapshotTiming

DEFAULT_SQLITE_PATH = "data/viewer_analytics.sqlite3"
# The largest request the server reads, from anyone. The largest real one is a gateway's batch at its
# largest GATEWAY_SEND_BATCH_SIZE (5,000 snapshots of at most 310 bytes: 1.55 MB), so 2 MiB fits it;
# gRPC's 4 MiB default let every caller without a key make this process hold twice as much per call.
DEFAULT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024

# MongoDB's read preference modes, by the lower-cased names the variable accepts.
READ_PREFERENCES = ("primary", "primarypreferred", "secondary", "secondarypreferred", "nearest")
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}")

# Every variable the ingest service reads (its --help lists them, with these defaults).
VARIABLES = Variables(INTERNAL_KEY_VARIABLES, TIMING_VARIABLES, LOG_VARIABLES)
_HOST = VARIABLES.declare("INGEST_HOST", "127.0.0.1", "address the gRPC server listens on")
_PORT = VARIABLES.declare("INGEST_PORT", "50051", "its port (0: any free port)")
VARIABLES.include(SERVER_TLS_VARIABLES)
_METRICS_HOST = VARIABLES.declare(
    "INGEST_METRICS_HOST", "127.0.0.1", "address of the HTTP listener for /metrics, /healthz and /readyz"
)
_METRICS_PORT = VARIABLES.declare(
    "INGEST_METRICS_PORT",
    "",
    "its port (unset: INGEST_PORT - 1, or 0 when INGEST_PORT is 0; 0: any free port; off: no listener)",
)
_MONGODB_URI = VARIABLES.declare(
    "MONGODB_URI", "", "snapshots go to this MongoDB when set (unset: the SQLite file)"
)
_MONGODB_TIMEOUT = VARIABLES.declare(
    "MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS", "5", "how long a call waits for an unreachable MongoDB"
)
_AUCTION_ID_TYPE = VARIABLES.declare(
    "MONGODB_AUCTION_ID_TYPE", "auto", "auto, objectid or string: how auction ids are stored in MongoDB"
)
_AUCTIONS_COLLECTION = VARIABLES.declare(
    "MONGODB_AUCTIONS_COLLECTION",
    "",
    "the backend's auction collection holding enableViewerAnalytics (unset: auctionsettings)",
)
_WRITE_CONCERN = VARIABLES.declare(
    "MONGODB_WRITE_CONCERN", "majority", "write concern of snapshot writes: majority or a number >= 1"
)
_WRITE_TIMEOUT = VARIABLES.declare(
    "MONGODB_WRITE_TIMEOUT_SECONDS", "10", "how long a write waits for its write concern"
)
_READ_PREFERENCE = VARIABLES.declare(
    "MONGODB_READ_PREFERENCE", "primary", "read preference of analytics queries (flags: always primary)"
)
_SQLITE_PATH = VARIABLES.declare(
    "ANALYTICS_SQLITE_PATH", DEFAULT_SQLITE_PATH, "the embedded SQLite file without MONGODB_URI"
)
_SQLITE_BUSY_TIMEOUT = VARIABLES.declare(
    "ANALYTICS_SQLITE_BUSY_TIMEOUT_SECONDS",
    "5",
    "how long a SQLite statement waits for another process's lock before the call is UNAVAILABLE",
)
VARIABLES.include(RETENTION_DAYS)
_SHUTDOWN_GRACE = VARIABLES.declare(
    "INGEST_SHUTDOWN_GRACE_SECONDS", "10", "how long SIGTERM waits for in-flight batches"
)
_MAX_MESSAGE_BYTES = VARIABLES.declare(
    "INGEST_MAX_MESSAGE_BYTES", str(DEFAULT_MAX_MESSAGE_BYTES), "largest accepted request message, bytes"
)
_FLAG_CACHE = VARIABLES.declare(
    "INGEST_FLAG_CACHE_SECONDS",
    "0",
    "how long analytics flags are cached (0: read per batch, so every replica agrees)",
)
VARIABLES.include(ALERT_VARIABLES)


@dataclass(frozen=True)
class MongoSettings:
    """How the MongoDB store writes, reads and names things (ignored on SQLite).

    ``write_concern`` is ``"majority"`` or a number of members (at least 1: the outcome of every
    snapshot is acknowledged); ``read_preference`` applies to the analytics queries, never to the
    flags, which are always read from the primary so every replica decides on the committed value.
    ``auctions_collection`` names the backend's own auction collection when the flag lives there.
    """

    auction_id_type: AuctionIdType = AuctionIdType.AUTO
    auctions_collection: str | None = None
    write_concern: str | int = "majority"
    write_timeout_seconds: float = 10.0
    read_preference: str = "primary"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MongoSettings:
        """Reads the ``MONGODB_*`` settings other than the URI.

        Raises:
            service_common.config.ConfigError: a variable is invalid (the message names it).
        """
        id_type = read_choice(env, _AUCTION_ID_TYPE, tuple(member.value for member in AuctionIdType))
        collection = read_optional_str(env, _AUCTIONS_COLLECTION)
        if collection is not None and (
            not _COLLECTION_NAME.fullmatch(collection) or collection.startswith("system.")
        ):
            raise ConfigError(
                "MONGODB_AUCTIONS_COLLECTION",
                f"expected a collection name (letters, digits, _ . -, not system.*), got {collection!r}",
            )
        raw_concern = read_str(env, _WRITE_CONCERN)
        write_concern: str | int = raw_concern
        if raw_concern != "majority":
            write_concern = read_int(env, _WRITE_CONCERN, minimum=1, maximum=50)
        return cls(
            auction_id_type=AuctionIdType(id_type),
            auctions_collection=collection,
            write_concern=write_concern,
            write_timeout_seconds=read_float(env, _WRITE_TIMEOUT, minimum=0.1, maximum=300.0),
            read_preference=read_choice(env, _READ_PREFERENCE, READ_PREFERENCES),
        )


@dataclass(frozen=True)
class MetricsListener:
    """Where the HTTP listener of ``/metrics``, ``/healthz`` and ``/readyz`` listens (0: any free port)."""

    host: str = "127.0.0.1"
    port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], grpc_port: int) -> MetricsListener | None:
        """Reads ``INGEST_METRICS_HOST`` and ``INGEST_METRICS_PORT``; None when the port is ``off``.

        Unset, the port is the one below ``grpc_port`` (the one above, 50052 by default, is the socket
        gateway's internal gRPC port, which shares a host with this service in the one-machine stack),
        and 0 when ``grpc_port`` is 0, so that a service told to pick a free port picks both.

        Raises:
            service_common.config.ConfigError: the port is neither a port nor ``off``, or is INGEST_PORT.
        """
        raw = read_str(env, _METRICS_PORT)
        if raw.lower() == "off":
            return None
        port = max(grpc_port - 1, 0) if raw == "" else read_port(env, _METRICS_PORT)
        if port and port == grpc_port:
            raise ConfigError("INGEST_METRICS_PORT", f"must differ from INGEST_PORT ({grpc_port})")
        return cls(host=read_str(env, _METRICS_HOST), port=port)


@dataclass(frozen=True)
class IngestConfig:
    """Everything the ingest service reads from its environment.

    ``mongodb_uri`` selects MongoDB; without it the embedded SQLite file at ``sqlite_path`` is used.
    ``mongodb_server_selection_timeout_seconds`` bounds how long a call waits for an unreachable
    MongoDB before it is answered ``UNAVAILABLE`` (PyMongo's ``serverSelectionTimeoutMS``).
    ``flag_cache_seconds`` of 0 (the default) reads the flags of every batch from the store, so that
    every replica decides on the committed value; more keeps them in this process that long.
    ``metrics`` is where the HTTP listener for ``/metrics`` and the probes listens; None (``off``, and
    the default of a configuration built in code, as the tests do) runs none.
    """

    internal_api_keys: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 50051
    mongodb_uri: str | None = None
    mongodb_server_selection_timeout_seconds: float = 5.0
    sqlite_path: str = DEFAULT_SQLITE_PATH
    sqlite_busy_timeout_seconds: float = 5.0
    retention_days: int = 90
    timing: SnapshotTiming = field(default_factory=SnapshotTiming)
    shutdown_grace_seconds: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    flag_cache_seconds: float = 0.0
    mongodb: MongoSettings = field(default_factory=MongoSettings)
    logging: LogSettings = field(default_factory=LogSettings)
    tls: ServerTls | None = None
    alerts: AlertSettings = field(default_factory=AlertSettings)
    metrics: MetricsListener | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestConfig:
        """Builds the configuration from ``env``.

        Raises:
            service_common.config.ConfigError: a variable is missing or invalid (the message names it).
        """
        port = read_port(env, _PORT)
        return cls(
            internal_api_keys=read_internal_api_keys(env),
            host=read_str(env, _HOST),
            port=port,
            mongodb_uri=read_optional_str(env, _MONGODB_URI),
            mongodb_server_selection_timeout_seconds=read_float(
                env, _MONGODB_TIMEOUT, minimum=0.1, maximum=120.0
            ),
            sqlite_path=read_str(env, _SQLITE_PATH),
            sqlite_busy_timeout_seconds=read_float(env, _SQLITE_BUSY_TIMEOUT, minimum=0.0, maximum=300.0),
            retention_days=read_int(env, RETENTION_DAYS, minimum=1, maximum=3650),
            timing=SnapshotTiming.from_env(env),
            shutdown_grace_seconds=read_float(env, _SHUTDOWN_GRACE, minimum=0.0, maximum=300.0),
            max_message_bytes=read_int(env, _MAX_MESSAGE_BYTES, minimum=64 * 1024, maximum=64 * 1024 * 1024),
            flag_cache_seconds=read_float(env, _FLAG_CACHE, minimum=0.0, maximum=3600.0),
            mongodb=MongoSettings.from_env(env),
            logging=LogSettings.from_env(env),
            tls=read_server_tls(env),
            alerts=AlertSettings.from_env(env),
            metrics=MetricsListener.from_env(env, port),
        )
