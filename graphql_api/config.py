"""The GraphQL API's configuration, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from graphql_api.budget import RequestBudget
from service_common.config import (
    ALLOWED_ORIGIN,
    INGEST_TARGET,
    RETENTION_DAYS,
    ConfigError,
    Variables,
    read_allowed_origins,
    read_choice,
    read_float,
    read_int,
    read_port,
    read_str,
)
from service_common.connection_guard import ConnectionLimits, connection_variables
from service_common.grpc_tls import (
    CLIENT_TLS_VARIABLES,
    GATEWAY_GRPC_CLIENT_TLS,
    ClientTls,
    read_client_tls,
)
from service_common.internal_auth import INTERNAL_KEY_VARIABLES, read_internal_api_keys
from service_common.logging_setup import LOG_VARIABLES, LogSettings
from service_common.timing import TIMING_VARIABLES, SnapshotTiming

JWT_SECRET_VARIABLE = "GRAPHQL_JWT_SECRET"
# RFC 7518 (3.2): an HS256 key must be at least as long as the hash output, 256 bits.
MIN_JWT_SECRET_LENGTH = 32
# The socket gateway's own default address, so a gateway and an API started with defaults meet.
DEFAULT_DASHBOARD_GATEWAY_URL = "http://127.0.0.1:8081"

# Every variable the GraphQL API reads (its --help lists them, with these defaults).
VARIABLES = Variables(INTERNAL_KEY_VARIABLES, TIMING_VARIABLES, LOG_VARIABLES)
_JWT_SECRET = VARIABLES.declare(
    JWT_SECRET_VARIABLE,
    "",
    "HS256 key verifying bearer tokens, at least 32 characters (claims sub, role, auctions, exp)",
    required=True,
)
_HOST = VARIABLES.declare("GRAPHQL_HOST", "127.0.0.1", "address the API listens on")
_PORT = VARIABLES.declare("GRAPHQL_PORT", "8080", "its port (0: any free port)")
VARIABLES.include(ALLOWED_ORIGIN, INGEST_TARGET, CLIENT_TLS_VARIABLES)
_INGEST_TIMEOUT = VARIABLES.declare(
    "GRAPHQL_INGEST_TIMEOUT_SECONDS", "3", "how long a call to the ingest service may take"
)
_MAX_RANGE_DAYS = VARIABLES.declare(
    "GRAPHQL_MAX_RANGE_DAYS", "92", "longest range one query may ask for, days"
)
_MAX_DEPTH = VARIABLES.declare("GRAPHQL_MAX_QUERY_DEPTH", "5", "deepest query accepted")
_MAX_TOKENS = VARIABLES.declare("GRAPHQL_MAX_QUERY_TOKENS", "1000", "most tokens in one query document")
_MAX_ALIASES = VARIABLES.declare("GRAPHQL_MAX_ALIASES", "15", "most aliases in one query document")
_MAX_POINTS = VARIABLES.declare(
    "GRAPHQL_MAX_POINTS_PER_REQUEST", "20000", "points over all of a request's points selections"
)
_MAX_RESPONSE_BYTES = VARIABLES.declare(
    "GRAPHQL_MAX_RESPONSE_BYTES", "4194304", "largest JSON response, bytes"
)
_MAX_REQUEST_SECONDS = VARIABLES.declare(
    "GRAPHQL_MAX_REQUEST_SECONDS", "10", "longest time from reading a request to its response being ready"
)
_DEV_MODE = VARIABLES.declare(
    "GRAPHQL_DEV_MODE", "false", "true serves GraphiQL at /graphql (development only)"
)
_DASHBOARD_GATEWAY_URL = VARIABLES.declare(
    "DASHBOARD_GATEWAY_URL",
    DEFAULT_DASHBOARD_GATEWAY_URL,
    "the socket gateway as the dashboard's browsers reach it",
)
VARIABLES.include(RETENTION_DAYS)
_SHUTDOWN_GRACE = VARIABLES.declare(
    "GRAPHQL_SHUTDOWN_GRACE_SECONDS", "10", "how long SIGTERM waits for requests being answered"
)
VARIABLES.include(connection_variables("GRAPHQL"))
_GATEWAY_GRPC_TARGET = VARIABLES.declare(
    "GATEWAY_GRPC_TARGET",
    "127.0.0.1:50052",
    "host:port of the socket gateway's internal gRPC port (live counts for subscriptions)",
)
VARIABLES.include(GATEWAY_GRPC_CLIENT_TLS.group)
_MAX_SUBSCRIPTIONS_PER_CONNECTION = VARIABLES.declare(
    "GRAPHQL_MAX_SUBSCRIPTIONS_PER_CONNECTION", "10", "operations one WebSocket connection may run at once"
)
_MAX_SUBSCRIPTIONS_PER_TOKEN = VARIABLES.declare(
    "GRAPHQL_MAX_SUBSCRIPTIONS_PER_TOKEN",
    "50",
    "subscriptions one token's subject may hold over all connections",
)
_SUBSCRIPTION_IDLE_TIMEOUT = VARIABLES.declare(
    "GRAPHQL_SUBSCRIPTION_IDLE_TIMEOUT_SECONDS",
    "60",
    "a WebSocket with no subscription this long (or no connection_init) is closed",
)


def read_jwt_secret(env: Mapping[str, str]) -> str:
    """``GRAPHQL_JWT_SECRET``: the HS256 key that signs and verifies bearer tokens.

    Raises:
        ConfigError: the variable is missing or shorter than 32 characters.
    """
    secret = read_str(env, _JWT_SECRET)
    if not secret:
        raise ConfigError(JWT_SECRET_VARIABLE, "is required (the HS256 key for bearer tokens)")
    if len(secret) < MIN_JWT_SECRET_LENGTH:
        raise ConfigError(JWT_SECRET_VARIABLE, f"must be at least {MIN_JWT_SECRET_LENGTH} characters")
    return secret


def _read_gateway_url(env: Mapping[str, str]) -> str:
    url = read_str(env, _DASHBOARD_GATEWAY_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            "DASHBOARD_GATEWAY_URL", f"expected a URL such as https://live.example, got {url!r}"
        )
    return url


def _read_target(env: Mapping[str, str]) -> str:
    target = read_str(env, _GATEWAY_GRPC_TARGET)
    if ":" not in target:
        raise ConfigError("GATEWAY_GRPC_TARGET", f"expected host:port, got {target!r}")
    return target


@dataclass(frozen=True)
class GraphQLConfig:
    """Everything the GraphQL API reads from its environment."""

    internal_api_key: str
    jwt_secret: str
    host: str = "127.0.0.1"
    port: int = 8080
    ingest_target: str = "127.0.0.1:50051"
    allowed_origins: tuple[str, ...] = ()
    ingest_timeout_seconds: float = 3.0
    max_range_days: int = 92
    # The deepest query the schema allows is 3 (auction > viewerAnalytics > points > at); 5 leaves room.
    max_query_depth: int = 5
    max_query_tokens: int = 1000
    max_aliases: int = 15
    # The per-request budget: points over all the document's `points` selections (one full series at
    # MINUTE is 20,000), bytes of the JSON response (20,000 points with every field are ~2.3 MB), and
    # the time from reading the request to its response being ready.
    max_points_per_request: int = 20_000
    max_response_bytes: int = 4 * 1024 * 1024
    max_request_seconds: float = 10.0
    dev_mode: bool = False
    # The socket gateway as the dashboard's browsers reach it (a public URL, not an internal address).
    dashboard_gateway_url: str = DEFAULT_DASHBOARD_GATEWAY_URL
    # What the dashboard tells users about recording: the gateway's and the ingest service's values,
    # read from the same variables (set them alike for all services, as local_stack does).
    timing: SnapshotTiming = field(default_factory=SnapshotTiming)
    retention_days: int = 90
    shutdown_grace_seconds: float = 10.0
    logging: LogSettings = field(default_factory=LogSettings)
    # INGEST_TLS_CA_FILE (and INGEST_TLS_SERVER_NAME): TLS to the ingest service; plaintext without it.
    ingest_tls: ClientTls | None = None
    # Idle and partial-request timeouts, open connections per address (service_common.connection_guard).
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    # Subscriptions over graphql-transport-ws on /graphql (docs/graphql_api.md, "Subscriptions").
    gateway_grpc_target: str = "127.0.0.1:50052"
    # GATEWAY_GRPC_TLS_CA_FILE (and GATEWAY_GRPC_TLS_SERVER_NAME): TLS to the gateways' live count port.
    gateway_grpc_tls: ClientTls | None = None
    max_subscriptions_per_connection: int = 10
    max_subscriptions_per_token: int = 50
    subscription_idle_timeout_seconds: float = 60.0

    @property
    def request_budget(self) -> RequestBudget:
        """What one GraphQL request may cost; ``ALL`` reaches back at most the retention period."""
        return RequestBudget(
            max_points=self.max_points_per_request,
            max_response_bytes=self.max_response_bytes,
            max_seconds=self.max_request_seconds,
            retention_days=self.retention_days,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GraphQLConfig:
        """Builds the configuration from ``env``.

        Raises:
            ConfigError: a variable is missing or invalid (the message names it).
        """
        return cls(
            # Clients send the first key; the others are there for servers during a rotation.
            internal_api_key=read_internal_api_keys(env)[0],
            jwt_secret=read_jwt_secret(env),
            host=read_str(env, _HOST),
            port=read_port(env, _PORT),
            ingest_target=read_str(env, INGEST_TARGET),
            allowed_origins=read_allowed_origins(env),
            ingest_timeout_seconds=read_float(env, _INGEST_TIMEOUT, minimum=0.05, maximum=60.0),
            max_range_days=read_int(env, _MAX_RANGE_DAYS, minimum=1, maximum=3650),
            max_query_depth=read_int(env, _MAX_DEPTH, minimum=1, maximum=50),
            max_query_tokens=read_int(env, _MAX_TOKENS, minimum=50, maximum=100_000),
            max_aliases=read_int(env, _MAX_ALIASES, minimum=1, maximum=1000),
            max_points_per_request=read_int(env, _MAX_POINTS, minimum=1, maximum=1_000_000),
            max_response_bytes=read_int(env, _MAX_RESPONSE_BYTES, minimum=1024, maximum=1024**3),
            max_request_seconds=read_float(env, _MAX_REQUEST_SECONDS, minimum=0.1, maximum=300.0),
            dev_mode=read_choice(env, _DEV_MODE, ("true", "false")) == "true",
            dashboard_gateway_url=_read_gateway_url(env),
            timing=SnapshotTiming.from_env(env),
            retention_days=read_int(env, RETENTION_DAYS, minimum=1, maximum=3650),
            shutdown_grace_seconds=read_float(env, _SHUTDOWN_GRACE, minimum=0.0, maximum=300.0),
            logging=LogSettings.from_env(env),
            ingest_tls=read_client_tls(env),
            connections=ConnectionLimits.from_env(env, "GRAPHQL"),
            gateway_grpc_target=_read_target(env),
            gateway_grpc_tls=read_client_tls(env, GATEWAY_GRPC_CLIENT_TLS),
            max_subscriptions_per_connection=read_int(
                env, _MAX_SUBSCRIPTIONS_PER_CONNECTION, minimum=1, maximum=1000
            ),
            max_subscriptions_per_token=read_int(
                env, _MAX_SUBSCRIPTIONS_PER_TOKEN, minimum=1, maximum=100_000
            ),
            subscription_idle_timeout_seconds=read_float(
                env, _SUBSCRIPTION_IDLE_TIMEOUT, minimum=1.0, maximum=86_400.0
            ),
        )
