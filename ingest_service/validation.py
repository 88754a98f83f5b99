"""The rules a received snapshot must satisfy before it is stored."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ingest_service.domain import AuctionIdType, Snapshot, is_object_id_hex
from ingest_service.sketches import samples_and_sketches_problem
from service_common.auction_ids import auction_id_problem

# Far above any real auction room, low enough that a corrupted counter cannot poison a chart's scale.
MAX_VIEWER_COUNT = 10_000_000
MAX_GATEWAY_ID_LENGTH = 128


def accepted_auction_id_problem(auction_id: str, id_type: AuctionIdType) -> str | None:
    """Why the ingest service refuses ``auction_id`` (in any call), or None if it accepts it.

    The rule shared by every service, plus, with ``MONGODB_AUCTION_ID_TYPE=objectid``, that the id
    is an ObjectId's text.
    """
    problem = auction_id_problem(auction_id)
    if problem is None and id_type is AuctionIdType.OBJECTID and not is_object_id_hex(auction_id):
        return "auction id must be an ObjectId: 24 lowercase hexadecimal digits"
    return problem


@dataclass(frozen=True)
class SnapshotRules:
    """The limits that depend on configuration: interval length, samples per interval, retention, id form."""

    snapshot_interval_seconds: int
    max_samples: int
    retention_seconds: int
    auction_id_type: AuctionIdType = AuctionIdType.AUTO

    def problem(self, snapshot: Snapshot, now: float) -> str | None:
        """Why ``snapshot`` must be rejected at time ``now`` (epoch seconds), or None if it is valid."""
        id_problem = accepted_auction_id_problem(snapshot.auction_id, self.auction_id_type)
        if id_problem:
            return id_problem
        interval = self.snapshot_interval_seconds
        if snapshot.minute_start % interval:
            return f"minute_start is not on a multiple of the {interval}-second snapshot interval"
        if snapshot.minute_start > now + 2 * interval:
            return "minute_start is more than two intervals in the future"
        if snapshot.minute_start < now - self.retention_seconds:
            return "minute_start is older than the retention period"
        if not 1 <= snapshot.sample_count <= self.max_samples:
            return f"sample_count must be between 1 and {self.max_samples}"
        if snapshot.peak_viewers > MAX_VIEWER_COUNT or snapshot.unique_viewers > MAX_VIEWER_COUNT:
            return f"counts must not exceed {MAX_VIEWER_COUNT}"
        if not math.isfinite(snapshot.avg_viewers):
            return "avg_viewers is not a finite number"
        if not snapshot.min_viewers <= snapshot.avg_viewers <= snapshot.peak_viewers:
            return "expected min_viewers <= avg_viewers <= peak_viewers"
        if not snapshot.min_viewers <= snapshot.viewer_count <= snapshot.peak_viewers:
            return "viewer_count must lie between min_viewers and peak_viewers"
        if snapshot.unique_viewers > snapshot.viewer_count:
            return "unique_viewers cannot exceed viewer_count (both are counted at the interval's end)"
        if len(snapshot.gateway_id) > MAX_GATEWAY_ID_LENGTH:
            return f"gateway_id is longer than {MAX_GATEWAY_ID_LENGTH} characters"
        return samples_and_sketches_problem(snapshot)
