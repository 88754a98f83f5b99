"""What a stored snapshot holds beyond its aggregates (samples, sketches), as the audience queries read it."""

from __future__ import annotations

import sqlite3
from array import array
from typing import NamedTuple

# Nullable: rows stored before these columns existed (and snapshots sent without samples) keep NULL.
_DETAIL_COLUMNS = (
    ("samples", "BLOB"),
    ("identified_sketch", "BLOB"),
    ("anonymous_sketch", "BLOB"),
)


class SnapshotDetail(NamedTuple):
    """One stored snapshot as the audience queries need it; ``samples`` empty when none were sent.

    A NamedTuple rather than a frozen dataclass: a query over an auction builds one per minute, and
    a NamedTuple is as immutable and several times quicker to build.
    """

    minute_start: int
    viewer_count: int
    avg_viewers: float
    peak_viewers: int
    min_viewers: int
    sample_count: int
    samples: tuple[int, ...]
    identified_sketch: bytes
    anonymous_sketch: bytes


def add_snapshot_detail_columns(connection: sqlite3.Connection) -> None:
    """Adds the detail columns to a ``viewer_snapshots`` table written before they existed."""
    existing = {row[1] for row in connection.execute("PRAGMA table_info(viewer_snapshots)")}
    for name, kind in _DETAIL_COLUMNS:
        if name not in existing:
            connection.execute(f"ALTER TABLE viewer_snapshots ADD COLUMN {name} {kind}")


def encode_samples(samples: tuple[int, ...]) -> bytes | None:
    """Samples as unsigned 32-bit integers in native (on our machines little-endian) order; None for none."""
    if not samples:
        return None
    packed = array("I", samples)
    if packed.itemsize != 4:  # pragma: no cover - every platform we run on has 4-byte unsigned ints
        raise RuntimeError("array('I') is not 32-bit here")
    return packed.tobytes()


def decode_samples(raw: bytes | None) -> tuple[int, ...]:
    if not raw:
        return ()
    return tuple(array("I", raw))
