"""Prometheus metrics in the text exposition format, kept per application (no global registry)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence

# Latency buckets in seconds: fine below 100 ms (the API's goal), coarse up to the ingest deadline.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


def _format_labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _escape(value: str) -> str:
    """A label value escaped as the exposition format requires: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help_text = help_text
        self._values: defaultdict[Labels, float] = defaultdict(float)

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self._values[labels] += amount

    def value(self, labels: Labels = ()) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter"]
        lines.extend(
            f"{self.name}{_format_labels(labels)} {_format_number(value)}"
            for labels, value in sorted(self._values.items())
        )
        return lines


class Histogram:
    """Observations counted into cumulative buckets per label set, with their sum and count."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help_text = help_text
        self._bounds = tuple(buckets)
        self._counts: dict[Labels, list[int]] = {}
        self._sums: defaultdict[Labels, float] = defaultdict(float)

    def observe(self, labels: Labels, value: float) -> None:
        counts = self._counts.setdefault(labels, [0] * (len(self._bounds) + 1))
        counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sums[labels] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        for labels, counts in sorted(self._counts.items()):
            cumulative = 0
            for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
                cumulative += count
                le = (("le", _format_number(bound)),)
                lines.append(f"{self.name}_bucket{_format_labels(labels, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_format_labels(labels)} {_format_number(self._sums[labels])}")
            lines.append(f"{self.name}_count{_format_labels(labels)} {cumulative}")
        return lines


class Metrics:
    """The API's metrics: HTTP requests, and the gRPC calls it makes to the ingest service."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.http_requests = Counter(
            "graphql_api_http_requests_total", "HTTP requests answered, by route, method and status."
        )
        self.http_duration = Histogram(
            "graphql_api_http_request_duration_seconds", "Time to answer an HTTP request, by route."
        )
        self.ingest_calls = Counter(
            "graphql_api_ingest_calls_total", "gRPC calls to the ingest service, by method and status code."
        )
        self.ingest_duration = Histogram(
            "graphql_api_ingest_call_duration_seconds", "Time of gRPC calls to the ingest service, by method."
        )
        self.graphql_errors = Counter(
            "graphql_api_graphql_errors_total", "Errors in GraphQL responses, by code."
        )

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for metric in (
            self.http_requests,
            self.http_duration,
            self.ingest_calls,
            self.ingest_duration,
            self.graphql_errors,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
