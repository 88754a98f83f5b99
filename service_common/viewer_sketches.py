"""Unique-viewer sketches as snapshots carry them: Apache DataSketches CPC, lg_k 11, the default seed.

Shared by whoever builds a snapshot's sketches (the gateway's sampler, merging its peers' sketches of
an interval) and the ingest service, which checks and merges them over ranges.
"""

from __future__ import annotations

from collections.abc import Iterable

import datasketches

CPC_LG_K = 11


class IntervalSketches:
    """The distinct viewers of one interval, identified (a verified token's ``sub``) apart from anonymous."""

    def __init__(self) -> None:
        self._identified = datasketches.cpc_sketch(CPC_LG_K)
        self._anonymous = datasketches.cpc_sketch(CPC_LG_K)

    def add_identified(self, subject: str) -> None:
        self._identified.update(subject)

    def add_anonymous(self, viewer_id: str) -> None:
        self._anonymous.update(viewer_id)

    def serialized(self) -> tuple[bytes, bytes]:
        """The ``(identified_viewer_sketch, anonymous_viewer_sketch)`` of a snapshot; empty: none seen."""
        return _bytes_or_empty(self._identified), _bytes_or_empty(self._anonymous)


def merge_serialized(sketches: Iterable[bytes]) -> bytes:
    """One sketch of the union of ``sketches`` (for example one interval's, from every gateway node).

    Empty entries are skipped; the result is empty when all are.

    Raises:
        ValueError: an entry is not a CPC sketch of lg_k 11.
    """
    union = datasketches.cpc_union(CPC_LG_K)
    merged_any = False
    for raw in sketches:
        if not raw:
            continue
        try:
            sketch = datasketches.cpc_sketch.deserialize(raw)
        except (IndexError, RuntimeError) as error:
            raise ValueError(f"not a CPC sketch: {error}") from error
        if sketch.lg_k != CPC_LG_K:
            raise ValueError(f"a CPC sketch of lg_k {sketch.lg_k}, expected {CPC_LG_K}")
        union.update(sketch)
        merged_any = True
    return bytes(union.get_result().serialize()) if merged_any else b""


def _bytes_or_empty(sketch: datasketches.cpc_sketch) -> bytes:
    return b"" if sketch.is_empty() else bytes(sketch.serialize())
