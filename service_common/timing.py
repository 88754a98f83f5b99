"""The snapshot timing shared by the gateway and the ingest service, read from the same variables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from service_common.config import ConfigError, Variables, read_int

TIMING_VARIABLES = Variables()
SNAPSHOT_INTERVAL_SECONDS = TIMING_VARIABLES.declare(
    "SNAPSHOT_INTERVAL_SECONDS",
    "60",
    "the snapshot interval (the 'minute'), seconds; the gateway and the ingest service must agree",
)
SAMPLE_INTERVAL_SECONDS = TIMING_VARIABLES.declare(
    "SAMPLE_INTERVAL_SECONDS", "5", "how often rooms are sampled within an interval, seconds"
)


@dataclass(frozen=True)
class SnapshotTiming:
    """How often rooms are sampled and how long one snapshot interval (the "minute") lasts.

    Both services read the same variables so that a shortened "minute" in tests and demos
    shortens it for the gateway that aggregates and the ingest service that validates alike.
    """

    snapshot_interval_seconds: int = 60
    sample_interval_seconds: int = 5

    @property
    def max_samples_per_snapshot(self) -> int:
        """Samples one interval can hold: 12 for the default 60 s interval sampled every 5 s."""
        return math.ceil(self.snapshot_interval_seconds / self.sample_interval_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SnapshotTiming:
        """Reads ``SNAPSHOT_INTERVAL_SECONDS`` and ``SAMPLE_INTERVAL_SECONDS``.

        Raises:
            ConfigError: a value is invalid or the sample interval exceeds the snapshot interval.
        """
        snapshot = read_int(env, SNAPSHOT_INTERVAL_SECONDS, minimum=1, maximum=86_400)
        sample = read_int(env, SAMPLE_INTERVAL_SECONDS, minimum=1, maximum=86_400)
        if sample > snapshot:
            raise ConfigError(
                "SAMPLE_INTERVAL_SECONDS",
                f"must not exceed SNAPSHOT_INTERVAL_SECONDS ({snapshot}), got {sample}",
            )
        return cls(snapshot_interval_seconds=snapshot, sample_interval_seconds=sample)
