"""The percentile every benchmark reports its latencies with."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value at least ``fraction`` of ``values`` do not exceed.

    Args:
        values: the measurements, in any order; at least one.
        fraction: 0.5 for the median, 0.99 for p99.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
