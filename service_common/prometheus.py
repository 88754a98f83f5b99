"""The one writer of the Prometheus text exposition format (version 0.0.4) behind every ``/metrics``.

Written by hand rather than with prometheus-client: each service's metrics are a few plain numbers
owned by its app object, which need no registry, no module-level state and no extra dependency.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets in seconds: fine below 100 ms (the API's goal), coarse up to the ingest deadline.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# A sample's labels as (name, value) pairs, in the order they are written.
Labels = tuple[tuple[str, str], ...]


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> list[str]:
    """The lines of one metric: its ``# HELP`` and ``# TYPE`` lines, then a line per sample.

    Args:
        name: the metric's name.
        kind: ``counter``, ``gauge`` or ``histogram``.
        help_text: what it counts, one line.
        samples: each sample's labels and value, in the order they are written.
    """
    return [*header(name, kind, help_text), *(sample(name, labels, value) for labels, value in samples)]


def header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def sample(name: str, labels: Labels, value: float) -> str:
    return f"{name}{format_labels(labels)} {format_number(value)}"


def exposition(lines: Iterable[str]) -> str:
    """The body of a ``/metrics`` answer: the lines, each ended by a newline."""
    return "".join(f"{line}\n" for line in lines)


def labelled(label: str, counts: Iterable[tuple[str, float]]) -> list[tuple[Labels, float]]:
    """Samples with one label, sorted by its value (``counts``: label value → count)."""
    return [(((label, key),), value) for key, value in sorted(counts)]


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels) + "}"


def format_number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _escape(value: str) -> str:
    """A label value escaped as the exposition format requires: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_samples(text: str) -> dict[str, float]:
    """The samples of an exposition this module wrote, as ``{name{labels}: value}`` (for probes and tests)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


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
        return family(self.name, "counter", self.help_text, sorted(self._values.items()))


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
        lines = header(self.name, "histogram", self.help_text)
        for labels, counts in sorted(self._counts.items()):
            cumulative = 0
            for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
                cumulative += count
                bucket = (*labels, ("le", format_number(bound)))
                lines.append(sample(f"{self.name}_bucket", bucket, cumulative))
            lines.append(sample(f"{self.name}_sum", labels, self._sums[labels]))
            lines.append(sample(f"{self.name}_count", labels, cumulative))
        return lines
