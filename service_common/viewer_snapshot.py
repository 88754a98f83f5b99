"""The snapshot record the gateway builds and the ingest service stores, and its one translation to the wire.

The gateway aggregates a room's samples into a :class:`Snapshot`, queues it in its outbox as the
serialized ``ViewerSnapshot`` message and streams it; the ingest service reads the message back into
the same record, validates and stores it. Both sides translate through :func:`to_wire` and
:func:`from_wire` only, so a field added to the message is added here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One auction room's viewer counts over one snapshot interval; mirrors the wire ``ViewerSnapshot``.

    ``minute_start`` is the interval's start in whole seconds since the Unix epoch (UTC);
    ``viewer_count`` and ``unique_viewers`` are counted at the interval's end.
    """

    auction_id: str
    minute_start: int
    viewer_count: int
    avg_viewers: float
    peak_viewers: int
    min_viewers: int
    sample_count: int
    unique_viewers: int
    partial: bool
    gateway_id: str
    # The interval's samples, oldest first, and CPC sketches of its distinct identified and anonymous
    # viewers (ingest_service.sketches); empty when the gateway sent none.
    samples: tuple[int, ...] = ()
    identified_sketch: bytes = b""
    anonymous_sketch: bytes = b""


class NotASnapshot(ValueError):
    """A ``ViewerSnapshot`` message that cannot stand for a snapshot; the message says why."""


def to_wire(snapshot: Snapshot) -> snapshot_pb2.ViewerSnapshot:
    """The ``ViewerSnapshot`` message of ``snapshot``."""
    return snapshot_pb2.ViewerSnapshot(
        auction_id=snapshot.auction_id,
        minute_start=Timestamp(seconds=snapshot.minute_start),
        viewer_count=snapshot.viewer_count,
        avg_viewers=snapshot.avg_viewers,
        peak_viewers=snapshot.peak_viewers,
        min_viewers=snapshot.min_viewers,
        sample_count=snapshot.sample_count,
        unique_viewers=snapshot.unique_viewers,
        partial=snapshot.partial,
        gateway_id=snapshot.gateway_id,
        samples=snapshot.samples,
        identified_viewer_sketch=snapshot.identified_sketch,
        anonymous_viewer_sketch=snapshot.anonymous_sketch,
    )


def from_wire(message: snapshot_pb2.ViewerSnapshot) -> Snapshot:
    """The snapshot ``message`` stands for.

    Raises:
        NotASnapshot: ``minute_start`` is missing or not a whole second.
    """
    if not message.HasField("minute_start"):
        raise NotASnapshot("minute_start is missing")
    minute_start = message.minute_start
    if minute_start.nanos:
        raise NotASnapshot("minute_start must be a whole second")
    # Positional, in the field order of Snapshot: the ingest service runs this once per received snapshot.
    return Snapshot(
        message.auction_id,
        minute_start.seconds,
        message.viewer_count,
        message.avg_viewers,
        message.peak_viewers,
        message.min_viewers,
        message.sample_count,
        message.unique_viewers,
        message.partial,
        message.gateway_id,
        tuple(message.samples),
        message.identified_viewer_sketch,
        message.anonymous_viewer_sketch,
    )
