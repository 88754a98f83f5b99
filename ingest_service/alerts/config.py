"""The alert deliveries' settings (``ALERT_*``), read once with the ingest service's configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ingest_service.alerts.sender import DeliverySettings
from ingest_service.alerts.targets import TargetPolicy
from service_common.config import ConfigError, Variables, read_float, read_optional_str, read_str

ALERT_VARIABLES = Variables()
_ALLOWED_NETWORKS = ALERT_VARIABLES.declare(
    "ALERT_WEBHOOK_ALLOWED_NETWORKS",
    "",
    "networks webhooks may reach although not public, comma-separated CIDRs (unset: public addresses only)",
)
_CA_FILE = ALERT_VARIABLES.declare(
    "ALERT_WEBHOOK_CA_FILE", "", "PEM CA certificates trusted for webhook endpoints besides the system's"
)
_TIMEOUT = ALERT_VARIABLES.declare(
    "ALERT_DELIVERY_TIMEOUT_SECONDS", "10", "how long one webhook attempt may take"
)
_INITIAL_BACKOFF = ALERT_VARIABLES.declare(
    "ALERT_DELIVERY_INITIAL_BACKOFF_SECONDS", "5", "delay before the first retry, doubled per attempt"
)
_MAX_BACKOFF = ALERT_VARIABLES.declare(
    "ALERT_DELIVERY_MAX_BACKOFF_SECONDS", "3600", "the longest delay between two attempts"
)
_GIVE_UP = ALERT_VARIABLES.declare(
    "ALERT_DELIVERY_GIVE_UP_SECONDS",
    "90000",
    "how long a delivery is retried before it fails (at least 1 day)",
)
_LEASE = ALERT_VARIABLES.declare(
    "ALERT_DELIVERY_LEASE_SECONDS",
    "60",
    "how long a claimed attempt is one sender's (after a crash it is retried then); above the timeout",
)
_POLL = ALERT_VARIABLES.declare(
    "ALERT_DELIVERY_POLL_SECONDS", "1", "how often the sender looks for due deliveries when idle"
)


@dataclass(frozen=True)
class AlertSettings:
    """Where webhooks may go and how deliveries are attempted."""

    policy: TargetPolicy = field(default_factory=TargetPolicy)
    ca_file: str | None = None
    delivery: DeliverySettings = field(default_factory=DeliverySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        """Reads the ``ALERT_*`` variables.

        Raises:
            service_common.config.ConfigError: a variable is invalid (the message names it).
        """
        try:
            policy = TargetPolicy.parse(read_str(env, _ALLOWED_NETWORKS).split(","))
        except ValueError as error:
            raise ConfigError(_ALLOWED_NETWORKS.name, f"expected CIDR networks: {error}") from None
        ca_file = read_optional_str(env, _CA_FILE)
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ConfigError(_CA_FILE.name, f"no such file: {ca_file}")
        timeout = read_float(env, _TIMEOUT, minimum=0.1, maximum=120.0)
        initial = read_float(env, _INITIAL_BACKOFF, minimum=0.01, maximum=3600.0)
        maximum = read_float(env, _MAX_BACKOFF, minimum=0.01, maximum=86_400.0)
        if maximum < initial:
            raise ConfigError(_MAX_BACKOFF.name, f"must be at least {_INITIAL_BACKOFF.name} ({initial})")
        lease = read_float(env, _LEASE, minimum=0.5, maximum=3600.0)
        if lease <= timeout:
            raise ConfigError(
                _LEASE.name, f"must exceed {_TIMEOUT.name} ({timeout}): an attempt ends within it"
            )
        return cls(
            policy=policy,
            ca_file=ca_file,
            delivery=DeliverySettings(
                request_timeout_seconds=timeout,
                initial_backoff_seconds=initial,
                max_backoff_seconds=maximum,
                give_up_after_seconds=read_float(env, _GIVE_UP, minimum=86_400.0, maximum=30 * 86_400.0),
                lease_seconds=lease,
                poll_interval_seconds=read_float(env, _POLL, minimum=0.05, maximum=60.0),
            ),
        )
