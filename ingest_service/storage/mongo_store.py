"""The production store: MongoDB through PyMongo's async API, retention enforced by a TTL index."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, ReadPreference, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError
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
from ingest_service.storage.port import SETTINGS_COLLECTION, SNAPSHOT_COLLECTION

logger = logging.getLogger(__name__)

Document = dict[str, Any]

DEFAULT_DATABASE = "viewer_analytics"
UNIQUE_INDEX = "auction_timestamp_unique"
TTL_INDEX = "timestamp_ttl"
_DUPLICATE_KEY = 11000
_MILLIS_PER_SECOND = 1000

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
    ) -> None:
        self._client = client
        self._database = database
        self._store_object_ids = settings.auction_id_type is not AuctionIdType.STRING
        self._snapshots: AsyncCollection[Document] = database.get_collection(
            SNAPSHOT_COLLECTION,
            write_concern=WriteConcern(
                w=settings.write_concern, wtimeout=round(settings.write_timeout_seconds * 1000)
            ),
            read_preference=_READ_PREFERENCES[settings.read_preference],
        )
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
    ) -> MongoSnapshotStore:
        """Connects to ``uri`` (database from its path, else ``viewer_analytics``) and ensures the indexes.

        Retryable writes and reads are on whatever the URI says: a batch is re-sent after a
        primary fails over rather than answered ``UNAVAILABLE``, and re-sending is idempotent.

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
        store = cls(client, client.get_default_database(default=DEFAULT_DATABASE), settings)
        try:
            await store._ensure_indexes(retention_days * 86_400)
        except PyMongoError as error:
            await client.close()
            raise StorageUnavailable(f"MongoDB: {error}") from error
        logger.info(
            "MongoDB store opened",
            extra={
                "database": store._database.name,
                "retention_days": retention_days,
                "flags_collection": store._settings.name,
                "auction_id_type": settings.auction_id_type.value,
                "write_concern": settings.write_concern,
                "read_preference": settings.read_preference,
            },
        )
        return store

    async def _ensure_indexes(self, retention_seconds: int) -> None:
        await self._snapshots.create_index(
            [("auction", ASCENDING), ("timestamp", ASCENDING)], unique=True, name=UNIQUE_INDEX
        )
        # createIndex refuses to change an existing index's options, so a changed retention goes
        # through collMod. The existing index is looked up rather than inferred from createIndex's
        # error, whose code differs between servers.
        existing = (await self._snapshots.index_information()).get(TTL_INDEX)
        if existing is None:
            await self._snapshots.create_index(
                [("timestamp", ASCENDING)], expireAfterSeconds=retention_seconds, name=TTL_INDEX
            )
        elif existing.get("expireAfterSeconds") != retention_seconds:
            await self._database.command(
                "collMod",
                SNAPSHOT_COLLECTION,
                index={"name": TTL_INDEX, "expireAfterSeconds": retention_seconds},
            )
            logger.info(
                "TTL index retention changed",
                extra={"from_seconds": existing.get("expireAfterSeconds"), "to_seconds": retention_seconds},
            )

    async def insert_snapshots(self, snapshots: Sequence[Snapshot]) -> list[SnapshotOutcome]:
        if not snapshots:
            return []
        stored_at = datetime.now(UTC)
        outcomes = [SnapshotOutcome.STORED] * len(snapshots)
        requests = [InsertOne(self._snapshot_document(snapshot, stored_at)) for snapshot in snapshots]
        try:
            await self._snapshots.bulk_write(requests, ordered=False)
        except BulkWriteError as error:
            other_errors = []
            for write_error in error.details.get("writeErrors", []):
                if write_error["code"] == _DUPLICATE_KEY:
                    outcomes[write_error["index"]] = SnapshotOutcome.DUPLICATE
                else:
                    other_errors.append(write_error)
            if other_errors or error.details.get("writeConcernErrors"):
                raise StorageUnavailable(f"MongoDB bulk write failed: {other_errors[:3]}") from error
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return outcomes

    def _stored_auction(self, auction_id: str) -> ObjectId | str:
        if self._store_object_ids and is_object_id_hex(auction_id):
            return ObjectId(auction_id)
        return auction_id

    def _snapshot_document(self, snapshot: Snapshot, stored_at: datetime) -> Document:
        # Field names follow the seed's ViewerAnalytics model, and an ObjectId's text is stored as
        # an ObjectId (MONGODB_AUCTION_ID_TYPE=auto), so the seed's own queries find these documents.
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
        bucket_millis = (bucket_seconds or 1) * _MILLIS_PER_SECOND
        epoch_millis = {"$toLong": "$timestamp"}
        pipeline: list[Document] = [
            {"$match": _range_match(query)},
            # By time alone (both forms of an ObjectId's text interleave), so $last below is each
            # bucket's latest snapshot; the unique index serves it, merging the forms' ranges.
            {"$sort": {"timestamp": 1}},
            {
                "$group": {
                    "_id": {"$subtract": [epoch_millis, {"$mod": [epoch_millis, bucket_millis]}]},
                    "weightedSum": {"$sum": {"$multiply": ["$avgViewers", "$sampleCount"]}},
                    "samples": {"$sum": "$sampleCount"},
                    "peak": {"$max": "$peakViewers"},
                    "low": {"$min": "$minViewers"},
                    "last": {"$last": "$viewerCount"},
                }
            },
            {"$sort": {"_id": 1}},
        ]
        documents = await self._aggregate(pipeline)
        return [
            AnalyticsPoint(
                bucket_start=document["_id"] // _MILLIS_PER_SECOND,
                avg_viewers=document["weightedSum"] / document["samples"],
                peak_viewers=document["peak"],
                min_viewers=document["low"],
                viewer_count=document["last"],
                sample_count=document["samples"],
            )
            for document in documents
        ]

    async def query_totals(self, query: AnalyticsRange) -> RangeTotals:
        pipeline: list[Document] = [
            {"$match": _range_match(query)},
            {
                "$group": {
                    "_id": None,
                    "count": {"$sum": 1},
                    "peak": {"$max": "$peakViewers"},
                    "weightedSum": {"$sum": {"$multiply": ["$avgViewers", "$sampleCount"]}},
                    "samples": {"$sum": "$sampleCount"},
                    "first": {"$min": "$timestamp"},
                    "last": {"$max": "$timestamp"},
                }
            },
        ]
        documents = await self._aggregate(pipeline)
        if not documents:
            return RangeTotals.empty()
        totals = documents[0]
        return RangeTotals(
            snapshot_count=totals["count"],
            peak_viewers=totals["peak"],
            weighted_viewer_sum=float(totals["weightedSum"]),
            sample_total=totals["samples"],
            first_minute=_to_epoch_seconds(totals["first"]),
            last_minute=_to_epoch_seconds(totals["last"]),
        )

    async def _aggregate(self, pipeline: list[Document]) -> list[Document]:
        try:
            cursor = await self._snapshots.aggregate(pipeline)
            return await cursor.to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def ping(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def close(self) -> None:
        await self._client.close()
        logger.info("MongoDB store closed")
