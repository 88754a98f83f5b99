"""The ingest service's configuration, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from service_common.config import read_float, read_int, read_optional_str, read_port, read_str
from service_common.grpc_tls import ServerTls, read_server_tls
from service_common.internal_auth import read_internal_api_keys
from service_common.logging_setup import LogSettings
from service_common.timing import SnapshotTiming

DEFAULT_SQLITE_PATH = "data/viewer_analytics.sqlite3"


@dataclass(frozen=True)
class IngestConfig:
    """Everything the ingest service reads from its environment.

    ``mongodb_uri`` selects MongoDB; without it the embedded SQLite file at ``sqlite_path`` is used.
    ``mongodb_server_selection_timeout_seconds`` bounds how long a call waits for an unreachable
    MongoDB before it is answered ``UNAVAILABLE`` (PyMongo's ``serverSelectionTimeoutMS``).
    """

    internal_api_keys: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 50051
    mongodb_uri: str | None = None
    mongodb_server_selection_timeout_seconds: float = 5.0
    sqlite_path: str = DEFAULT_SQLITE_PATH
    retention_days: int = 90
    timing: SnapshotTiming = field(default_factory=SnapshotTiming)
    shutdown_grace_seconds: float = 10.0
    max_message_bytes: int = 4 * 1024 * 1024
    flag_cache_seconds: float = 30.0
    logging: LogSettings = field(default_factory=LogSettings)
    tls: ServerTls | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestConfig:
        """Builds the configuration from ``env``.

        Raises:
            service_common.config.ConfigError: a variable is missing or invalid (the message names it).
        """
        return cls(
            internal_api_keys=read_internal_api_keys(env),
            host=read_str(env, "INGEST_HOST", "127.0.0.1"),
            port=read_port(env, "INGEST_PORT", 50051),
            mongodb_uri=read_optional_str(env, "MONGODB_URI"),
            mongodb_server_selection_timeout_seconds=read_float(
                env, "MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=120.0
            ),
            sqlite_path=read_str(env, "ANALYTICS_SQLITE_PATH", DEFAULT_SQLITE_PATH),
            retention_days=read_int(env, "VIEWER_ANALYTICS_RETENTION_DAYS", 90, minimum=1, maximum=3650),
            timing=SnapshotTiming.from_env(env),
            shutdown_grace_seconds=read_float(
                env, "INGEST_SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0.0, maximum=300.0
            ),
            max_message_bytes=read_int(
                env, "INGEST_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=64 * 1024, maximum=64 * 1024 * 1024
            ),
            flag_cache_seconds=read_float(
                env, "INGEST_FLAG_CACHE_SECONDS", 30.0, minimum=0.0, maximum=3600.0
            ),
            logging=LogSettings.from_env(env),
            tls=read_server_tls(env),
        )
