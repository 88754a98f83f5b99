"""Per-hour merged unique-viewer sketches on MongoDB (see ``sketch_rollups`` for why they exist).

One document per auction and hour in ``vieweranalyticshourlysketches``: the union of the hour's
identified and anonymous sketches, the minutes merged into them (offsets in the hour) and a version.
A CPC union cannot be computed by the server, so a write reads the hours it touches, merges in
Python and writes each back only if its version is still the one read (an upsert on
``(auction, hour, version)``: a writer that lost the race meets the unique index and merges again).
Minutes already in a document are not merged twice, so re-sent batches and concurrent replicas
agree; the documents expire with their hour's last minute, like the hourly rollups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from ingest_service.domain import StorageUnavailable
from ingest_service.sketches import SketchMerger
from ingest_service.storage.sketch_rollups import HOUR, HourSketches

Document = dict[str, Any]
HourKey = tuple[ObjectId | str, int]

SKETCH_COLLECTION = "vieweranalyticshourlysketches"
SKETCH_UNIQUE_INDEX = "auction_hour_unique"
SKETCH_TTL_INDEX = "last_minute_ttl"
# Written once the sketches of every minute stored before these rollups existed are in them.
SKETCHES_BUILT_MARKER = "hourlySketchesBuilt"
# Another writer can win the same hour at most this many times in a row before the batch fails
# (UNAVAILABLE: the gateway re-sends, which is idempotent).
_MAX_ATTEMPTS = 8
_DUPLICATE_KEY = 11000
SKETCH_FIELDS = ("identifiedViewerSketch", "anonymousViewerSketch")
# Matches the minutes that carry a sketch (fields absent when the gateway sent none).
HAS_SKETCH: Document = {"$or": [{name: {"$exists": True}} for name in SKETCH_FIELDS]}


def _at(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


async def ensure_indexes(collection: AsyncCollection[Document]) -> None:
    await collection.create_index(
        [("auction", ASCENDING), ("hour", ASCENDING)], unique=True, name=SKETCH_UNIQUE_INDEX
    )


async def fold(collection: AsyncCollection[Document], hours: Mapping[HourKey, HourSketches]) -> None:
    """Merges the gathered minutes into their hours' documents, retrying hours another writer changed.

    Raises:
        StorageUnavailable: an hour kept changing under this writer, or a write error other than
            the lost race.
        PyMongoError: the server could not be reached (the caller turns it into StorageUnavailable).
    """
    pending = dict(hours)
    for _ in range(_MAX_ATTEMPTS):
        if not pending:
            return
        pending = await _fold_once(collection, pending)
    raise StorageUnavailable("MongoDB: hourly sketch rollups kept changing under this writer")


async def _fold_once(
    collection: AsyncCollection[Document], hours: dict[HourKey, HourSketches]
) -> dict[HourKey, HourSketches]:
    """One read and one unordered bulk write of the hours; returns those another writer changed."""
    keys = list(hours)
    found = await collection.find(
        {"$or": [{"auction": auction, "hour": _at(hour)} for auction, hour in keys]}
    ).to_list()
    existing = {(document["auction"], int(document["hour"].timestamp())): document for document in found}
    requests: list[UpdateOne] = []
    written: list[HourKey] = []
    for key in keys:
        document = existing.get(key, {})
        merged_minutes = set(document.get("minutes", ()))
        gathered = hours[key]
        new = [minute for minute in gathered.minutes if minute % HOUR not in merged_minutes]
        if not new:
            continue
        identified, anonymous = gathered.merged_into(
            bytes(document.get("identified") or b""),
            bytes(document.get("anonymous") or b""),
            skip={minute for minute in gathered.minutes if minute % HOUR in merged_minutes},
        )
        minutes = sorted(merged_minutes | {minute % HOUR for minute in new})
        auction, hour = key
        last_minute = max(hour + minutes[-1], int(document.get("last", 0)))
        fields: Document = {
            "minutes": minutes,
            "sketched": len(minutes),
            "last": last_minute,
            "lastMinuteAt": _at(last_minute),
        }
        for name, value in (("identified", identified), ("anonymous", anonymous)):
            if value:
                fields[name] = value
        # Version 0 for an hour not written yet: the upsert seeds it from the filter and $inc makes it 1.
        selector = {"auction": auction, "hour": _at(hour), "version": document.get("version", 0)}
        requests.append(UpdateOne(selector, {"$set": fields, "$inc": {"version": 1}}, upsert=True))
        written.append(key)
    if not requests:
        return {}
    try:
        await collection.bulk_write(requests, ordered=False)
    except BulkWriteError as error:
        if error.details.get("writeConcernErrors"):
            raise StorageUnavailable(
                f"MongoDB bulk write failed: {error.details['writeConcernErrors'][:3]}"
            ) from error
        errors: list[Document] = error.details.get("writeErrors", [])
        others = [each for each in errors if each.get("code") != _DUPLICATE_KEY]
        if others:
            raise StorageUnavailable(f"MongoDB bulk write failed: {others[:3]}") from error
        # A version changed since the read: the upsert met the unique index. Read and merge again.
        return {written[each["index"]]: hours[written[each["index"]]] for each in errors}
    return {}


async def merge_hours(
    collection: AsyncCollection[Document],
    auction_match: Any,
    first_hour: int,
    end_hour: int | None,
    merger: SketchMerger,
) -> None:
    """Merges the rollups of the hours in ``[first_hour, end_hour)`` (None: unbounded), one at a time."""
    hours: Document = {"$gte": _at(first_hour)}
    if end_hour is not None:
        hours["$lt"] = _at(end_hour)
    cursor = collection.find(
        {"auction": auction_match, "hour": hours}, {"identified": 1, "anonymous": 1, "sketched": 1}
    ).batch_size(500)
    async for document in cursor:
        merger.add_merged(
            bytes(document.get("identified") or b""),
            bytes(document.get("anonymous") or b""),
            int(document.get("sketched", 0)),
        )


async def merge_minutes(documents: AsyncIterator[Document], merger: SketchMerger) -> None:
    """Merges the sketches of minute documents (those matched by ``HAS_SKETCH``), one at a time."""
    async for document in documents:
        merger.add(bytes(document.get(SKETCH_FIELDS[0]) or b""), bytes(document.get(SKETCH_FIELDS[1]) or b""))
