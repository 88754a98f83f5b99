"""The production store: MongoDB through PyMongo's async API, retention enforced by a TTL index."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    InsertOne,
    ReadPreference,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ClientBulkWriteException, PyMongoError
from pymongo.read_preferences import _ServerMode
from pymongo.write_concern import WriteConcern

from ingest_service.config import MongoSettings
from ingest_service.domain import (
    AnalyticsPoint,
    AnalyticsRange,
    AuctionIdType,
    AuctionNotFound,
    AuctionSettings,
    RangeTotals,
    Snapshot,
    SnapshotOutcome,
    StorageUnavailable,
    is_object_id_hex,
)
from ingest_service.sketches import SketchMerger, UniqueViewerCount
from ingest_service.storage import mongo_sketch_rollups as sketch_rollups
from ingest_service.storage.mongo_rollups import (
    HOUR,
    HOURLY_COLLECTION,
    HOURLY_TTL_INDEX,
    HOURLY_UNIQUE_INDEX,
    META_COLLECTION,
    ROLLUPS_BUILT_MARKER,
    RollupBatch,
    hour_of,
    minute_entry,
)
from ingest_service.storage.mongo_sketch_rollups import (
    HAS_SKETCH,
    SKETCH_COLLECTION,
    SKETCH_FIELDS,
    SKETCH_TTL_INDEX,
    SKETCHES_BUILT_MARKER,
    HourKey,
)
from ingest_service.storage.partial_aggregates import PartialAggregate, merge_by_bucket, totals_of
from ingest_service.storage.port import SETTINGS_COLLECTION, SNAPSHOT_COLLECTION
from ingest_service.storage.sketch_rollups import HourSketches
from service_common.supervision import Supervisor

logger = logging.getLogger(__name__)

Document = dict[str, Any]

DEFAULT_DATABASE = "viewer_analytics"
UNIQUE_INDEX = "auction_timestamp_unique"
TTL_INDEX = "timestamp_ttl"
_DUPLICATE_KEY = 11000
_MILLIS_PER_SECOND = 1000
# MongoDB 8.0: the bulkWrite command, one request writing several collections.
_CLIENT_BULK_WRITE_WIRE_VERSION = 25
# A stored minute's fields, in minute_entry's order after the time.
_MINUTE_FIELDS = ("viewerCount", "avgViewers", "sampleCount", "peakViewers", "minViewers")
# Rollup updates per request while building the rollups of minutes stored before they existed.
_BUILD_BATCH = 500
# The metadata document the ingest service rewrites to learn whether the database takes writes.
WRITE_PROBE = "writeProbe"

_READ_PREFERENCES: dict[str, _ServerMode] = {
    "primary": ReadPreference.PRIMARY,
    "primarypreferred": ReadPreference.PRIMARY_PREFERRED,
    "secondary": ReadPreference.SECONDARY,
    "secondarypreferred": ReadPreference.SECONDARY_PREFERRED,
    "nearest": ReadPreference.NEAREST,
}
# The flag fields on the backend's auction documents: its own, and the time of our last change.
BACKEND_FLAG = "enableViewerAnalytics"
BACKEND_FLAG_CHANGED_AT = "viewerAnalyticsUpdatedAt"


def _to_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def _to_epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _auction_match(auction_id: str) -> Any:
    """What matches an auction id in ``auction`` (or an ``_id``): an ObjectId's text in both forms.

    Documents the seed's backend wrote carry ObjectIds, those of versions before
    ``MONGODB_AUCTION_ID_TYPE`` strings; both stay readable whatever the setting.
    """
    if is_object_id_hex(auction_id):
        return {"$in": [ObjectId(auction_id), auction_id]}
    return auction_id


def _range_match(query: AnalyticsRange) -> Document:
    match: Document = {"auction": _auction_match(query.auction_id)}
    bounds: Document = {}
    if query.start is not None:
        bounds["$gte"] = _to_datetime(query.start)
    if query.end is not None:
        bounds["$lt"] = _to_datetime(query.end)
    if bounds:
        match["timestamp"] = bounds
    return match


def _backend_changed_at(document: Document) -> float | None:
    """When the flag on a backend auction document last changed, as far as the document tells.

    Our own timestamp when we wrote the flag; else the document's ``updatedAt`` (Mongoose's
    timestamps), which a change through the backend's settings page moves; else unknown.
    """
    for name in (BACKEND_FLAG_CHANGED_AT, "updatedAt"):
        value = document.get(name)
        if isinstance(value, datetime):
            return value.timestamp()
    return None


def _bucket_key(epoch_millis: Document, bucket_seconds: int | None) -> Any:
    """The ``$group`` key of an epoch-aligned bucket (0: per second; None: one for everything)."""
    if bucket_seconds is None:
        return None
    bucket_millis = (bucket_seconds or 1) * _MILLIS_PER_SECOND
    return {"$subtract": [epoch_millis, {"$mod": [epoch_millis, bucket_millis]}]}


def _split_duplicates(errors: list[tuple[int, Document]], minutes: int) -> tuple[list[int], list[int]]:
    """Sorts a bulk write's errors into duplicate minutes (below ``minutes``) and conflicting rollups.

    Raises:
        StorageUnavailable: an error other than a duplicate key.
    """
    duplicates: list[int] = []
    conflicts: list[int] = []
    others = []
    for index, error in errors:
        if error.get("code") != _DUPLICATE_KEY:
            others.append(error)
        elif index < minutes:
            duplicates.append(index)
        else:
            conflicts.append(index - minutes)
    if others:
        raise StorageUnavailable(f"MongoDB bulk write failed: {others[:3]}")
    return duplicates, conflicts


class MongoSnapshotStore:
    """The SnapshotStore port on MongoDB.

    Snapshots live in ``vieweranalytics`` (unique on ``auction`` + ``timestamp``, expired by a
    TTL index on ``timestamp``); flags in ``auctionsettings`` keyed by auction id, or on the
    backend's own auction documents (``settings.auctions_collection``, by ``_id``). Queries run
    as aggregation pipelines on the server; no method loads a range's documents into Python.

    Snapshots are written with the configured write concern and queried with the configured read
    preference; flags are written with a majority write concern and read from the primary, so a
    change acknowledged to one ingest replica is what every replica reads next.
    """

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: AsyncDatabase[Document],
        settings: MongoSettings,
        *,
        retention_seconds: int,
        clock: Callable[[], float] = time.time,
        one_request_per_batch: bool = True,
    ) -> None:
        self._client = client
        self._database = database
        self._retention_seconds = retention_seconds
        self._clock = clock
        self._one_request_per_batch = one_request_per_batch
        self._store_object_ids = settings.auction_id_type is not AuctionIdType.STRING
        self._write_concern = WriteConcern(
            w=settings.write_concern, wtimeout=round(settings.write_timeout_seconds * 1000)
        )
        read_preference = _READ_PREFERENCES[settings.read_preference]
        self._snapshots: AsyncCollection[Document] = database.get_collection(
            SNAPSHOT_COLLECTION, write_concern=self._write_concern, read_preference=read_preference
        )
        self._hourly: AsyncCollection[Document] = database.get_collection(
            HOURLY_COLLECTION, write_concern=self._write_concern, read_preference=read_preference
        )
        self._meta: AsyncCollection[Document] = database.get_collection(
            META_COLLECTION, write_concern=WriteConcern(w="majority"), read_preference=ReadPreference.PRIMARY
        )
        self._hourly_sketches: AsyncCollection[Document] = database.get_collection(
            SKETCH_COLLECTION, write_concern=self._write_concern, read_preference=read_preference
        )
        # Set once every stored minute is in a rollup; until then queries read only the minutes.
        self.rollups_complete = asyncio.Event()
        # The same for the hourly sketch rollups (unique viewers).
        self.sketch_rollups_complete = asyncio.Event()
        self._supervisor = Supervisor()
        self._flags_on_auctions = settings.auctions_collection is not None
        self._settings: AsyncCollection[Document] = database.get_collection(
            settings.auctions_collection or SETTINGS_COLLECTION,
            write_concern=WriteConcern(w="majority", wtimeout=round(settings.write_timeout_seconds * 1000)),
            read_preference=ReadPreference.PRIMARY,
        )

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        retention_days: int,
        server_selection_timeout_ms: int = 5000,
        settings: MongoSettings | None = None,
        clock: Callable[[], float] = time.time,
        one_request_per_batch: bool | None = None,
    ) -> MongoSnapshotStore:
        """Connects to ``uri`` (database from its path, else ``viewer_analytics``) and ensures the indexes.

        Retryable writes and reads are on whatever the URI says: a batch is re-sent after a
        primary fails over rather than answered ``UNAVAILABLE``, and re-sending is idempotent.
        If minutes were stored before the hourly rollups existed, their rollups are built in the
        background (queries read only the minutes until that is done).

        Args:
            one_request_per_batch: write a batch's minutes and rollups in one ``bulkWrite``
                request (MongoDB 8.0 and later); None decides by the server's version. False writes
                the minutes, then the rollups, as the servers before 8.0 must.

        Raises:
            StorageUnavailable: the server cannot be reached or the indexes cannot be set.
        """
        settings = settings or MongoSettings()
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri,
            tz_aware=True,
            serverSelectionTimeoutMS=server_selection_timeout_ms,
            retryWrites=True,
            retryReads=True,
            appname="viewer-analytics-ingest",
        )
        try:
            if one_request_per_batch is None:
                hello = await client.admin.command("hello")
                one_request_per_batch = hello.get("maxWireVersion", 0) >= _CLIENT_BULK_WRITE_WIRE_VERSION
            store = cls(
                client,
                client.get_default_database(default=DEFAULT_DATABASE),
                settings,
                retention_seconds=retention_days * 86_400,
                clock=clock,
                one_request_per_batch=one_request_per_batch,
            )
            await store._ensure_indexes(retention_days * 86_400)
            if await store._meta.find_one({"_id": ROLLUPS_BUILT_MARKER}) is not None:
                store.rollups_complete.set()
            if await store._meta.find_one({"_id": SKETCHES_BUILT_MARKER}) is not None:
                store.sketch_rollups_complete.set()
        except PyMongoError as error:
            await client.close()
            raise StorageUnavailable(f"MongoDB: {error}") from error
        if not store.rollups_complete.is_set():
            store._supervisor.start("mongodb-rollup-build", store._build_rollups)
        if not store.sketch_rollups_complete.is_set():
            store._supervisor.start("mongodb-sketch-rollup-build", store._build_sketch_rollups)
        logger.info(
            "MongoDB store opened",
            extra={
                "database": store._database.name,
                "retention_days": retention_days,
                "flags_collection": store._settings.name,
                "auction_id_type": settings.auction_id_type.value,
                "write_concern": settings.write_concern,
                "read_preference": settings.read_preference,
                "one_request_per_batch": one_request_per_batch,
                "rollups_complete": store.rollups_complete.is_set(),
            },
        )
        return store

    async def _ensure_indexes(self, retention_seconds: int) -> None:
        # Idempotent: createIndex with the same keys and options is a no-op. These unique indexes
        # are also what the recommended shard keys need (docs/ingest_service.md, "Sharding"). Index
        # commands use the server's default write concern, not the snapshots' (MONGODB_WRITE_CONCERN
        # describes how batches are acknowledged, and must not keep a replica from starting).
        snapshots = self._database.get_collection(SNAPSHOT_COLLECTION)
        hourly = self._database.get_collection(HOURLY_COLLECTION)
        await snapshots.create_index(
            [("auction", ASCENDING), ("timestamp", ASCENDING)], unique=True, name=UNIQUE_INDEX
        )
        await hourly.create_index(
            [("auction", ASCENDING), ("hour", ASCENDING)], unique=True, name=HOURLY_UNIQUE_INDEX
        )
        await self._ensure_ttl(snapshots, TTL_INDEX, "timestamp", retention_seconds)
        await self._ensure_ttl(hourly, HOURLY_TTL_INDEX, "lastMinuteAt", retention_seconds)
        sketches = self._database.get_collection(SKETCH_COLLECTION)
        await sketch_rollups.ensure_indexes(sketches)
        await self._ensure_ttl(sketches, SKETCH_TTL_INDEX, "lastMinuteAt", retention_seconds)

    async def _ensure_ttl(
        self, collection: AsyncCollection[Document], name: str, field: str, retention_seconds: int
    ) -> None:
        # createIndex refuses to change an existing index's options, so a changed retention goes
        # through collMod. The existing index is looked up rather than inferred from createIndex's
        # error, whose code differs between servers.
        existing = (await collection.index_information()).get(name)
        if existing is None:
            await collection.create_index(
                [(field, ASCENDING)], expireAfterSeconds=retention_seconds, name=name
            )
        elif existing.get("expireAfterSeconds") != retention_seconds:
            await self._database.command(
                "collMod", collection.name, index={"name": name, "expireAfterSeconds": retention_seconds}
            )
            logger.info(
                "TTL index retention changed",
                extra={
                    "collection": collection.name,
                    "from_seconds": existing.get("expireAfterSeconds"),
                    "to_seconds": retention_seconds,
                },
            )

    async def insert_snapshots(self, snapshots: Sequence[Snapshot]) -> list[SnapshotOutcome]:
        if not snapshots:
            return []
        stored_at = datetime.now(UTC)
        documents = [self._snapshot_document(snapshot, stored_at) for snapshot in snapshots]
        rollups = RollupBatch()
        # Every snapshot of the batch goes into the rollups, duplicates too: the merge keeps the
        # first write of a minute, so a batch re-sent after its rollups failed completes them.
        for s in snapshots:
            rollups.add(
                self._stored_auction(s.auction_id),
                *minute_entry(
                    s.minute_start,
                    s.viewer_count,
                    s.avg_viewers,
                    s.sample_count,
                    s.peak_viewers,
                    s.min_viewers,
                ),
            )
        updates = list(rollups.updates())
        try:
            if self._one_request_per_batch:
                duplicates, rollup_conflicts = await self._write_in_one_request(documents, updates)
            else:
                duplicates = await self._insert_minutes(documents)
                rollup_conflicts = await self._write_rollups(updates)
            # Two writers creating one rollup at once: the loser's upsert fails on the unique index
            # (mongod retries that itself; not every server does). Now the document exists: merge again.
            if rollup_conflicts and await self._write_rollups([updates[i] for i in rollup_conflicts]):
                raise StorageUnavailable("MongoDB: rollup upserts kept conflicting")
            # After the minutes, as the duplicates above: a batch re-sent after this failed completes it.
            await sketch_rollups.fold(self._hourly_sketches, self._sketched_hours(snapshots))
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        outcomes = [SnapshotOutcome.STORED] * len(snapshots)
        for index in duplicates:
            outcomes[index] = SnapshotOutcome.DUPLICATE
        return outcomes

    async def _write_in_one_request(
        self, documents: list[Document], updates: list[tuple[Document, list[Document]]]
    ) -> tuple[list[int], list[int]]:
        """Minutes and rollups in one unordered ``bulkWrite``; returns duplicate and conflicting indexes."""
        snapshots_ns = f"{self._database.name}.{SNAPSHOT_COLLECTION}"
        hourly_ns = f"{self._database.name}.{HOURLY_COLLECTION}"
        requests: list[InsertOne[Document] | UpdateOne] = [
            InsertOne(document, namespace=snapshots_ns) for document in documents
        ]
        requests += [UpdateOne(key, update, upsert=True, namespace=hourly_ns) for key, update in updates]
        try:
            await self._client.bulk_write(requests, ordered=False, write_concern=self._write_concern)
        except ClientBulkWriteException as error:
            if error.error is not None or error.write_concern_errors:
                raise StorageUnavailable(
                    f"MongoDB bulk write failed: {error.error or error.write_concern_errors}"
                ) from error
            # The server's dicts, as in ``details`` (``write_errors`` is annotated as exceptions).
            write_errors: list[Document] = error.details.get("writeErrors") or []
            return _split_duplicates([(each["idx"], each) for each in write_errors], len(documents))
        return [], []

    async def _insert_minutes(self, documents: list[Document]) -> list[int]:
        """The minutes in one unordered bulk write; returns the indexes of the duplicates."""
        try:
            await self._snapshots.bulk_write([InsertOne(document) for document in documents], ordered=False)
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                raise StorageUnavailable(
                    f"MongoDB bulk write failed: {error.details['writeConcernErrors'][:3]}"
                ) from error
            duplicates, _ = _split_duplicates(
                [(write_error["index"], write_error) for write_error in error.details.get("writeErrors", [])],
                len(documents),
            )
            return duplicates
        return []

    async def _write_rollups(self, updates: list[tuple[Document, list[Document]]]) -> list[int]:
        """Rollup updates in one unordered bulk write; returns the indexes of those that conflicted."""
        if not updates:
            return []
        try:
            await self._hourly.bulk_write(
                [UpdateOne(key, update, upsert=True) for key, update in updates], ordered=False
            )
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                raise StorageUnavailable(
                    f"MongoDB bulk write failed: {error.details['writeConcernErrors'][:3]}"
                ) from error
            _, conflicts = _split_duplicates(
                [(write_error["index"], write_error) for write_error in error.details.get("writeErrors", [])],
                0,
            )
            return conflicts
        return []

    async def _build_rollups(self) -> None:
        """Rolls up every stored minute (those stored before rollups existed), then marks it done.

        Runs beside live writes: both only add minutes that are absent, so they agree. Several
        replicas starting at once may each run it; the result is the same.
        """
        logger.info("Building hourly rollups of the minutes stored before they existed")
        projection = dict.fromkeys(("auction", "timestamp", *_MINUTE_FIELDS), 1)
        batch = RollupBatch()
        rolled_up = skipped = 0
        # In the unique index's order, so a batch holds whole hours of few auctions; from the
        # primary, as part of writing (whatever MONGODB_READ_PREFERENCE says for queries).
        minutes = self._database.get_collection(SNAPSHOT_COLLECTION, read_preference=ReadPreference.PRIMARY)
        cursor = minutes.find({}, projection, sort=[("auction", 1), ("timestamp", 1)])
        async for document in cursor:
            values: list[Any] = [document.get(name) for name in _MINUTE_FIELDS]
            at = document.get("timestamp")
            if not isinstance(at, datetime) or not all(isinstance(value, int | float) for value in values):
                # A document another program wrote without one of the fields (or not as a number)
                # cannot be rolled up; counted in the log line below.
                skipped += 1
                continue
            viewer_count, avg_viewers, sample_count, peak, low = values
            batch.add(
                document["auction"],
                *minute_entry(_to_epoch_seconds(at), viewer_count, avg_viewers, sample_count, peak, low),
            )
            rolled_up += 1
            if len(batch) >= _BUILD_BATCH:
                await self._write_all_rollups(batch)
                batch = RollupBatch()
        await self._write_all_rollups(batch)
        await self._meta.update_one(
            {"_id": ROLLUPS_BUILT_MARKER}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
        )
        self.rollups_complete.set()
        if skipped:
            logger.warning(
                "Minutes without a numeric count left out of the rollups", extra={"skipped": skipped}
            )
        logger.info("Hourly rollups built", extra={"minutes": rolled_up})

    def _sketched_hours(self, snapshots: Sequence[Snapshot]) -> dict[HourKey, HourSketches]:
        """The batch's sketched minutes per (stored auction, hour); a repeated minute keeps its first."""
        hours: dict[HourKey, HourSketches] = {}
        for s in snapshots:
            if s.identified_sketch or s.anonymous_sketch:
                key = (self._stored_auction(s.auction_id), hour_of(s.minute_start))
                hours.setdefault(key, HourSketches()).add(
                    s.minute_start, s.identified_sketch, s.anonymous_sketch
                )
        return hours

    async def _build_sketch_rollups(self) -> None:
        """Rolls up the sketches of the minutes stored before the sketch rollups existed, then marks it.

        Runs beside live writes: both merge only minutes absent from an hour, so they agree.
        """
        minutes = self._database.get_collection(SNAPSHOT_COLLECTION, read_preference=ReadPreference.PRIMARY)
        projection = dict.fromkeys(("auction", "timestamp", *SKETCH_FIELDS), 1)
        cursor = minutes.find(HAS_SKETCH, projection, sort=[("auction", 1), ("timestamp", 1)])
        hours: dict[HourKey, HourSketches] = {}
        rolled_up = 0
        try:
            async for document in cursor:
                at = document.get("timestamp")
                if not isinstance(at, datetime):
                    continue
                minute_start = _to_epoch_seconds(at)
                key = (document["auction"], hour_of(minute_start))
                hours.setdefault(key, HourSketches()).add(
                    minute_start,
                    bytes(document.get(SKETCH_FIELDS[0]) or b""),
                    bytes(document.get(SKETCH_FIELDS[1]) or b""),
                )
                rolled_up += 1
                if len(hours) >= _BUILD_BATCH:
                    await sketch_rollups.fold(self._hourly_sketches, hours)
                    hours = {}
            await sketch_rollups.fold(self._hourly_sketches, hours)
            await self._meta.update_one(
                {"_id": SKETCHES_BUILT_MARKER}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        self.sketch_rollups_complete.set()
        if rolled_up:
            logger.info("Hourly sketch rollups built", extra={"minutes": rolled_up})

    async def query_unique_viewers(self, query: AnalyticsRange) -> UniqueViewerCount:
        """Whole hours from the sketch rollups (once built, and not older than the retention's cutoff,
        where the TTL monitor may have cut into an hour), the rest from the minutes, one at a time."""
        merger = SketchMerger()
        start, end = query.start, query.end
        try:
            whole_hours = self._whole_sketched_hours(start, end)
            if whole_hours is None:
                await self._merge_minutes(query.auction_id, start, end, merger)
            else:
                first_hour, end_hour = whole_hours
                await self._merge_minutes(query.auction_id, start, first_hour, merger)
                await sketch_rollups.merge_hours(
                    self._hourly_sketches, _auction_match(query.auction_id), first_hour, end_hour, merger
                )
                if end_hour is not None:
                    await self._merge_minutes(query.auction_id, end_hour, end, merger)
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        totals = await self.query_totals(query)
        merger.count_unsketched(totals.snapshot_count - merger.sketched_snapshots)
        return merger.result()

    def _whole_sketched_hours(self, start: int | None, end: int | None) -> tuple[int, int | None] | None:
        """The hours of ``[start, end)`` to read from the sketch rollups, or None for none."""
        if not self.sketch_rollups_complete.is_set():
            return None
        cutoff_hour = -(-int(self._clock() - self._retention_seconds) // HOUR) * HOUR
        first_hour = cutoff_hour if start is None else max(cutoff_hour, -(-start // HOUR) * HOUR)
        end_hour = None if end is None else hour_of(end)
        if end_hour is not None and first_hour >= end_hour:
            return None
        return first_hour, end_hour

    async def _merge_minutes(
        self, auction_id: str, start: int | None, end: int | None, merger: SketchMerger
    ) -> None:
        if start is not None and end is not None and start >= end:
            return
        match = {**_range_match(AnalyticsRange(auction_id, start, end)), **HAS_SKETCH}
        cursor = self._snapshots.find(match, dict.fromkeys(SKETCH_FIELDS, 1)).batch_size(500)
        await sketch_rollups.merge_minutes(aiter(cursor), merger)

    async def _write_all_rollups(self, batch: RollupBatch) -> None:
        updates = list(batch.updates())
        conflicts = await self._write_rollups(updates)
        if conflicts:
            await self._write_rollups([updates[i] for i in conflicts])

    def _stored_auction(self, auction_id: str) -> ObjectId | str:
        if self._store_object_ids and is_object_id_hex(auction_id):
            return ObjectId(auction_id)
        return auction_id

    @property
    def database(self) -> AsyncDatabase[Document]:
        """The database, for the auction events stored beside the snapshots (storage.mongo_events)."""
        return self._database

    def stored_auction(self, auction_id: str) -> ObjectId | str:
        """How ``auction_id`` is stored under the configured MONGODB_AUCTION_ID_TYPE."""
        return self._stored_auction(auction_id)

    def _snapshot_document(self, snapshot: Snapshot, stored_at: datetime) -> Document:
        # Field names follow the seed's ViewerAnalytics model, and an ObjectId's text is stored as
        # an ObjectId (MONGODB_AUCTION_ID_TYPE=auto), so the seed's own queries find these documents.
        document = self._seed_fields(snapshot, stored_at)
        # Absent rather than empty when the gateway sent none: documents stay as the seed writes them.
        if snapshot.samples:
            document["samples"] = list(snapshot.samples)
        if snapshot.identified_sketch:
            document["identifiedViewerSketch"] = snapshot.identified_sketch
        if snapshot.anonymous_sketch:
            document["anonymousViewerSketch"] = snapshot.anonymous_sketch
        return document

    def _seed_fields(self, snapshot: Snapshot, stored_at: datetime) -> Document:
        return {
            "auction": self._stored_auction(snapshot.auction_id),
            "timestamp": _to_datetime(snapshot.minute_start),
            "viewerCount": snapshot.viewer_count,
            "avgViewers": snapshot.avg_viewers,
            "peakViewers": snapshot.peak_viewers,
            "minViewers": snapshot.min_viewers,
            "sampleCount": snapshot.sample_count,
            "uniqueViewers": snapshot.unique_viewers,
            "partial": snapshot.partial,
            "gatewayId": snapshot.gateway_id,
            "createdAt": stored_at,
        }

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]:
        if not auction_ids:
            return {}
        if self._flags_on_auctions:
            return await self._get_backend_flags(auction_ids)
        try:
            cursor = self._settings.find({"_id": {"$in": list(auction_ids)}})
            documents = await cursor.to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return {
            document["_id"]: AuctionSettings(
                document["_id"],
                bool(document["enableViewerAnalytics"]),
                document["updatedAt"].timestamp(),
            )
            for document in documents
        }

    async def _get_backend_flags(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]:
        wanted = set(auction_ids)
        forms: list[ObjectId | str] = list(wanted)
        forms += [ObjectId(auction_id) for auction_id in wanted if is_object_id_hex(auction_id)]
        projection = {BACKEND_FLAG: 1, BACKEND_FLAG_CHANGED_AT: 1, "updatedAt": 1}
        try:
            documents = await self._settings.find({"_id": {"$in": forms}}, projection).to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        found: dict[str, AuctionSettings] = {}
        # ObjectIds sort after strings: where both forms exist, the ObjectId (the auction) wins.
        for document in sorted(documents, key=lambda document: isinstance(document["_id"], ObjectId)):
            auction_id = str(document["_id"])
            # An auction whose document lacks the field was never configured: absent, as the port says.
            if auction_id in wanted and BACKEND_FLAG in document:
                found[auction_id] = AuctionSettings(
                    auction_id, bool(document[BACKEND_FLAG]), _backend_changed_at(document)
                )
        return found

    async def set_viewer_analytics(self, auction_id: str, enabled: bool, now: float) -> AuctionSettings:
        if self._flags_on_auctions:
            return await self._set_backend_flag(auction_id, enabled, now)
        # updatedAt is when the flag last changed: an update pipeline keeps it when the flag already
        # has this value, in one atomic write (a read then a write could race another replica's).
        unchanged = {"$eq": ["$enableViewerAnalytics", enabled]}
        try:
            document = await self._settings.find_one_and_update(
                {"_id": auction_id},
                [
                    {
                        "$set": {
                            "updatedAt": {"$cond": [unchanged, "$updatedAt", _to_datetime(now)]},
                            "enableViewerAnalytics": enabled,
                        }
                    }
                ],
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        # An upsert returning the document after the write always finds one.
        assert document is not None
        return AuctionSettings(
            auction_id, bool(document["enableViewerAnalytics"]), document["updatedAt"].timestamp()
        )

    async def _set_backend_flag(self, auction_id: str, enabled: bool, now: float) -> AuctionSettings:
        # Never an upsert: a document in the backend's collection is an auction, and only the backend
        # creates those. Writing the value it already has keeps the time of the last real change.
        unchanged = {"$eq": ["$" + BACKEND_FLAG, enabled]}
        update = [
            {
                "$set": {
                    BACKEND_FLAG_CHANGED_AT: {
                        "$cond": [unchanged, "$" + BACKEND_FLAG_CHANGED_AT, _to_datetime(now)]
                    },
                    BACKEND_FLAG: enabled,
                }
            }
        ]
        try:
            document = await self._settings.find_one_and_update(
                {"_id": _auction_match(auction_id)},
                update,
                projection={BACKEND_FLAG: 1, BACKEND_FLAG_CHANGED_AT: 1, "updatedAt": 1},
                sort=[("_id", DESCENDING)],
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        if document is None:
            raise AuctionNotFound(f"no auction has the id {auction_id!r}")
        return AuctionSettings(auction_id, enabled, _backend_changed_at(document))

    async def query_points(self, query: AnalyticsRange, bucket_seconds: int) -> list[AnalyticsPoint]:
        return [part.to_point() for part in await self._aggregates(query, bucket_seconds)]

    async def query_totals(self, query: AnalyticsRange) -> RangeTotals:
        return totals_of(await self._aggregates(query, None))

    async def _aggregates(self, query: AnalyticsRange, bucket_seconds: int | None) -> list[PartialAggregate]:
        """The range's minutes aggregated per epoch-aligned bucket (0: per minute; None: one bucket).

        For buckets of whole hours (and for the totals), the whole hours inside the range come from
        the rollups and only the partial hours at its ends from the minutes — except hours older
        than the retention's cutoff, which the TTL monitor may have cut into: those are read from
        the minutes, which are what the TTL leaves.
        """
        whole_hours = bucket_seconds is None or (bucket_seconds > 0 and bucket_seconds % HOUR == 0)
        if whole_hours and self.rollups_complete.is_set():
            cutoff_hour = -(-int(self._clock() - self._retention_seconds) // HOUR) * HOUR
            start, end = query.start, query.end
            first_hour = cutoff_hour if start is None else max(cutoff_hour, -(-start // HOUR) * HOUR)
            end_hour = None if end is None else hour_of(end)
            if end_hour is None or first_hour < end_hour:
                parts = await self._raw_aggregates(query.auction_id, start, first_hour, bucket_seconds)
                parts += await self._rollup_aggregates(query.auction_id, first_hour, end_hour, bucket_seconds)
                if end_hour is not None:
                    parts += await self._raw_aggregates(query.auction_id, end_hour, end, bucket_seconds)
                return merge_by_bucket(parts)
        return await self._raw_aggregates(query.auction_id, query.start, query.end, bucket_seconds)

    async def _raw_aggregates(
        self, auction_id: str, start: int | None, end: int | None, bucket_seconds: int | None
    ) -> list[PartialAggregate]:
        if start is not None and end is not None and start >= end:
            return []
        epoch_millis = {"$toLong": "$timestamp"}
        pipeline: list[Document] = [
            {"$match": _range_match(AnalyticsRange(auction_id, start, end))},
            # By time alone (both forms of an ObjectId's text interleave), so $last below is each
            # bucket's latest snapshot; the unique index serves it, merging the forms' ranges.
            {"$sort": {"timestamp": 1}},
            {
                "$group": {
                    "_id": _bucket_key(epoch_millis, bucket_seconds),
                    "count": {"$sum": 1},
                    "weightedSum": {"$sum": {"$multiply": ["$avgViewers", "$sampleCount"]}},
                    "samples": {"$sum": "$sampleCount"},
                    "peak": {"$max": "$peakViewers"},
                    "low": {"$min": "$minViewers"},
                    "first": {"$min": "$timestamp"},
                    "last": {"$max": "$timestamp"},
                    "lastViewerCount": {"$last": "$viewerCount"},
                }
            },
            {"$sort": {"_id": 1}},
        ]
        return [
            PartialAggregate(
                bucket_start=(document["_id"] or 0) // _MILLIS_PER_SECOND,
                snapshot_count=document["count"],
                weighted_viewer_sum=float(document["weightedSum"]),
                sample_total=document["samples"],
                peak_viewers=document["peak"],
                min_viewers=document["low"],
                first_minute=_to_epoch_seconds(document["first"]),
                last_minute=_to_epoch_seconds(document["last"]),
                last_viewer_count=document["lastViewerCount"],
            )
            for document in await self._aggregate(self._snapshots, pipeline)
        ]

    async def _rollup_aggregates(
        self, auction_id: str, first_hour: int, end_hour: int | None, bucket_seconds: int | None
    ) -> list[PartialAggregate]:
        hours: Document = {"$gte": _to_datetime(first_hour)}
        if end_hour is not None:
            hours["$lt"] = _to_datetime(end_hour)
        pipeline: list[Document] = [
            {"$match": {"auction": _auction_match(auction_id), "hour": hours}},
            # Both forms of an ObjectId's text may have a rollup of one hour: the later last minute
            # sorts last, so $last below is each bucket's latest viewer count.
            {"$sort": {"hour": 1, "last": 1}},
            {
                "$group": {
                    "_id": _bucket_key({"$toLong": "$hour"}, bucket_seconds),
                    "count": {"$sum": "$count"},
                    "weightedSum": {"$sum": "$weightedSum"},
                    "samples": {"$sum": "$samples"},
                    "peak": {"$max": "$peak"},
                    "low": {"$min": "$low"},
                    "first": {"$min": "$first"},
                    "last": {"$max": "$last"},
                    "lastViewerCount": {"$last": "$lastViewerCount"},
                }
            },
        ]
        return [
            PartialAggregate(
                bucket_start=(document["_id"] or 0) // _MILLIS_PER_SECOND,
                snapshot_count=document["count"],
                weighted_viewer_sum=float(document["weightedSum"]),
                sample_total=document["samples"],
                peak_viewers=document["peak"],
                min_viewers=document["low"],
                first_minute=document["first"],
                last_minute=document["last"],
                last_viewer_count=document["lastViewerCount"],
            )
            for document in await self._aggregate(self._hourly, pipeline)
        ]

    @staticmethod
    async def _aggregate(collection: AsyncCollection[Document], pipeline: list[Document]) -> list[Document]:
        try:
            cursor = await collection.aggregate(pipeline)
            return await cursor.to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def ping(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def check_writable(self) -> None:
        # One small document in the store's own metadata, written with the snapshots' write concern.
        try:
            await self._meta.with_options(write_concern=self._write_concern).update_one(
                {"_id": WRITE_PROBE}, {"$set": {"checkedAt": _to_datetime(self._clock())}}, upsert=True
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def close(self) -> None:
        await self._supervisor.stop()
        await self._client.close()
        logger.info("MongoDB store closed")
