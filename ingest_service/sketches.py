"""A snapshot's samples and unique-viewer sketches: their rules, and sketches merged over a range.

The sketches are Apache DataSketches CPC sketches (``datasketches.cpc_sketch``, lg_k 11, the default
seed): mergeable across intervals and gateway nodes, about 1.3 KB serialized at 10,000 distinct
viewers, with a relative standard error of about 1.6% (the library's bounds are reported with each
estimate).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import datasketches

from ingest_service.domain import Snapshot
from service_common.viewer_sketches import CPC_LG_K, merge_serialized

# A CPC sketch at lg_k 11 stays below this whatever it holds; a larger one is not ours.
MAX_SKETCH_BYTES = 4096
# Far above any real auction room (as validation.MAX_VIEWER_COUNT).
MAX_SAMPLE_VALUE = 10_000_000
# 95% bounds: two standard deviations, as the library counts them.
BOUND_STANDARD_DEVIATIONS = 2


def sketch_problem(name: str, raw: bytes) -> str | None:
    """Why ``raw`` is not a CPC sketch to store, or None (empty bytes: no sketch)."""
    if not raw:
        return None
    if len(raw) > MAX_SKETCH_BYTES:
        return f"{name} is larger than {MAX_SKETCH_BYTES} bytes"
    try:
        sketch = datasketches.cpc_sketch.deserialize(raw)
    except (IndexError, ValueError, RuntimeError) as error:
        return f"{name} is not a CPC sketch: {error}"
    if sketch.lg_k != CPC_LG_K:
        return f"{name} must have lg_k {CPC_LG_K}"
    return None


def samples_and_sketches_problem(snapshot: Snapshot) -> str | None:
    """Why a snapshot's samples or sketches are refused, or None; a snapshot without them is fine."""
    samples = snapshot.samples
    if samples:
        if len(samples) != snapshot.sample_count:
            return "samples must hold exactly sample_count values"
        if max(samples) != snapshot.peak_viewers or min(samples) != snapshot.min_viewers:
            return "samples must agree with peak_viewers and min_viewers"
        if max(samples) > MAX_SAMPLE_VALUE:
            return f"samples must not exceed {MAX_SAMPLE_VALUE}"
    return sketch_problem("identified_viewer_sketch", snapshot.identified_sketch) or sketch_problem(
        "anonymous_viewer_sketch", snapshot.anonymous_sketch
    )


@dataclass(frozen=True, slots=True)
class UniqueViewerCount:
    """Distinct viewers of a range from merged sketches, with the library's 95% bounds."""

    estimate: float
    lower_bound: float
    upper_bound: float
    identified_estimate: float
    anonymous_estimate: float
    exact: bool
    sketched_snapshots: int
    unsketched_snapshots: int


def merge_into(existing: bytes, additions: Iterable[bytes]) -> bytes:
    """``existing`` (a serialized CPC sketch, or empty) with ``additions`` merged in; empty if all are.

    CPC unions are idempotent and commutative: merging a sketch twice, or in another order, gives
    the same sketch, which is what lets re-sent snapshots and concurrent writers of one hour agree.
    """
    return merge_serialized([existing, *additions])


class SketchMerger:
    """Merges snapshots' sketches: identified and anonymous apart, and their union for the total.

    The total is the union of the two unions' results, formed once at the end: the same sketch as
    merging every input into a third union (a union does not depend on how its inputs are grouped),
    at half the merges.
    """

    def __init__(self) -> None:
        self._identified = datasketches.cpc_union(CPC_LG_K)
        self._anonymous = datasketches.cpc_union(CPC_LG_K)
        self._sketched = 0
        self._unsketched = 0

    def add(self, identified: bytes, anonymous: bytes) -> None:
        """Adds one snapshot's sketches (either may be empty; both empty: a snapshot without sketches)."""
        if not identified and not anonymous:
            self._unsketched += 1
            return
        self.add_merged(identified, anonymous, 1)

    def add_merged(self, identified: bytes, anonymous: bytes, sketched_snapshots: int) -> None:
        """Adds sketches already merged over ``sketched_snapshots`` snapshots (an hour's rollup)."""
        self._sketched += sketched_snapshots
        for raw, union in ((identified, self._identified), (anonymous, self._anonymous)):
            if raw:
                union.update(datasketches.cpc_sketch.deserialize(raw))

    def count_unsketched(self, snapshots: int) -> None:
        """Counts ``snapshots`` more snapshots without sketches (known from the range's totals)."""
        self._unsketched += snapshots

    @property
    def sketched_snapshots(self) -> int:
        return self._sketched

    def add_all(self, pairs: Iterable[tuple[bytes, bytes]]) -> SketchMerger:
        for identified, anonymous in pairs:
            self.add(identified, anonymous)
        return self

    def result(self) -> UniqueViewerCount:
        identified, anonymous = self._identified.get_result(), self._anonymous.get_result()
        union = datasketches.cpc_union(CPC_LG_K)
        union.update(identified)
        union.update(anonymous)
        total = union.get_result()
        lower = total.get_lower_bound(BOUND_STANDARD_DEVIATIONS)
        upper = total.get_upper_bound(BOUND_STANDARD_DEVIATIONS)
        estimate = total.get_estimate()
        return UniqueViewerCount(
            estimate=estimate,
            lower_bound=lower,
            upper_bound=upper,
            identified_estimate=identified.get_estimate(),
            anonymous_estimate=anonymous.get_estimate(),
            exact=lower == upper,
            sketched_snapshots=self._sketched,
            unsketched_snapshots=self._unsketched,
        )
