"""Hourly rollups on MongoDB: one document per auction and hour, built so that any write order agrees.

A rollup holds its hour's minutes in a map (offset in the hour → the minute's values) besides the
totals computed from that map. A write merges minutes into the map *only where absent* and then
recomputes the totals from the map, in one update pipeline. So writing a minute twice (a re-sent
batch, the same snapshot through two replicas, a rebuild running beside live writes) changes
nothing the second time, the first write of a minute wins as it does in ``vieweranalytics``, and
writes commute: no write needs to know whether its minute was new.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

Document = dict[str, Any]

HOURLY_COLLECTION = "vieweranalyticshourly"
HOURLY_UNIQUE_INDEX = "auction_hour_unique"
HOURLY_TTL_INDEX = "last_minute_ttl"
META_COLLECTION = "vieweranalyticsmeta"
# The marker written once every minute stored before rollups existed has been rolled up.
ROLLUPS_BUILT_MARKER = "hourlyRollupsBuilt"
HOUR = 3600

# Folds the map into totals: count, weighted sum, samples, peak, low, first and last minute, and
# the last minute's viewer count. $max/$min ignore the nulls they start from.
_TOTALS_OF_MAP = {
    "$reduce": {
        "input": {"$objectToArray": "$m"},
        "initialValue": {"c": 0, "w": 0.0, "s": 0, "p": None, "n": None, "f": None, "l": -1, "v": None},
        "in": {
            "c": {"$add": ["$$value.c", 1]},
            "w": {"$add": ["$$value.w", "$$this.v.w"]},
            "s": {"$add": ["$$value.s", "$$this.v.s"]},
            "p": {"$max": ["$$value.p", "$$this.v.p"]},
            "n": {"$min": ["$$value.n", "$$this.v.n"]},
            "f": {"$min": ["$$value.f", "$$this.v.t"]},
            "l": {"$max": ["$$value.l", "$$this.v.t"]},
            "v": {"$cond": [{"$gt": ["$$this.v.t", "$$value.l"]}, "$$this.v.v", "$$value.v"]},
        },
    }
}


def hour_of(epoch_seconds: int) -> int:
    return epoch_seconds - epoch_seconds % HOUR


def minute_entry(
    minute_start: int, viewer_count: int, avg_viewers: float, sample_count: int, peak: int, low: int
) -> tuple[str, Document]:
    """The map key (the minute's offset in its hour, zero-padded) and the minute's values."""
    offset = minute_start % HOUR
    return f"{offset:04d}", {
        "t": minute_start,
        "v": viewer_count,
        "w": avg_viewers * sample_count,
        "s": sample_count,
        "p": peak,
        "n": low,
    }


def rollup_update(
    auction: ObjectId | str, hour_start: int, minutes: Document
) -> tuple[Document, list[Document]]:
    """The filter and update pipeline that merge ``minutes`` into the rollup of (``auction``, hour)."""
    update: list[Document] = [
        {"$set": {"m": {"$mergeObjects": [{"$literal": minutes}, {"$ifNull": ["$m", {}]}]}}},
        {"$set": {"_totals": _TOTALS_OF_MAP}},
        {
            "$set": {
                "count": "$_totals.c",
                "weightedSum": "$_totals.w",
                "samples": "$_totals.s",
                "peak": "$_totals.p",
                "low": "$_totals.n",
                "first": "$_totals.f",
                "last": "$_totals.l",
                "lastViewerCount": "$_totals.v",
                # The TTL field: a rollup expires with its hour's last minute.
                "lastMinuteAt": {"$toDate": {"$toLong": {"$multiply": ["$_totals.l", 1000]}}},
            }
        },
        {"$unset": "_totals"},
    ]
    return {"auction": auction, "hour": datetime.fromtimestamp(hour_start, UTC)}, update


class RollupBatch:
    """Minutes gathered per (auction, hour), the first of a repeated minute kept, as rollup updates."""

    def __init__(self) -> None:
        self._hours: dict[tuple[ObjectId | str, int], Document] = {}

    def add(self, auction: ObjectId | str, key: str, entry: Document) -> None:
        minutes = self._hours.setdefault((auction, hour_of(entry["t"])), {})
        minutes.setdefault(key, entry)

    def __len__(self) -> int:
        return len(self._hours)

    def updates(self) -> Iterable[tuple[Document, list[Document]]]:
        for (auction, hour_start), minutes in self._hours.items():
            yield rollup_update(auction, hour_start, minutes)
