"""The production store: MongoDB through PyMongo's async API, retention enforced by a TTL index."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, InsertOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from ingest_service.domain import (
    AnalyticsPoint,
    AnalyticsRange,
    AuctionSettings,
    RangeTotals,
    Snapshot,
    SnapshotOutcome,
    StorageUnavailable,
)
from ingest_service.storage.port import SETTINGS_COLLECTION, SNAPSHOT_COLLECTION

logger = logging.getLogger(__name__)

Document = dict[str, Any]

DEFAULT_DATABASE = "viewer_analytics"
UNIQUE_INDEX = "auction_timestamp_unique"
TTL_INDEX = "timestamp_ttl"
_DUPLICATE_KEY = 11000
_MILLIS_PER_SECOND = 1000


def _to_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def _to_epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _snapshot_document(snapshot: Snapshot, stored_at: datetime) -> Document:
    # Field names follow the seed's ViewerAnalytics model, so its existing documents stay readable.
    return {
        "auction": snapshot.auction_id,
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


def _range_match(query: AnalyticsRange) -> Document:
    match: Document = {"auction": query.auction_id}
    bounds: Document = {}
    if query.start is not None:
        bounds["$gte"] = _to_datetime(query.start)
    if query.end is not None:
        bounds["$lt"] = _to_datetime(query.end)
    if bounds:
        match["timestamp"] = bounds
    return match


class MongoSnapshotStore:
    """The SnapshotStore port on MongoDB.

    Snapshots live in ``vieweranalytics`` (unique on ``auction`` + ``timestamp``, expired by a
    TTL index on ``timestamp``), settings in ``auctionsettings`` keyed by auction id. Queries run
    as aggregation pipelines on the server; no method loads a range's documents into Python.
    """

    def __init__(self, client: AsyncMongoClient[Document], database: AsyncDatabase[Document]) -> None:
        self._client = client
        self._database = database
        self._snapshots: AsyncCollection[Document] = database[SNAPSHOT_COLLECTION]
        self._settings: AsyncCollection[Document] = database[SETTINGS_COLLECTION]

    @classmethod
    async def open(
        cls, uri: str, *, retention_days: int, server_selection_timeout_ms: int = 5000
    ) -> MongoSnapshotStore:
        """Connects to ``uri`` (database from its path, else ``viewer_analytics``) and ensures the indexes.

        Raises:
            StorageUnavailable: the server cannot be reached or the indexes cannot be set.
        """
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=server_selection_timeout_ms
        )
        store = cls(client, client.get_default_database(default=DEFAULT_DATABASE))
        try:
            await store._ensure_indexes(retention_days * 86_400)
        except PyMongoError as error:
            await client.close()
            raise StorageUnavailable(f"MongoDB: {error}") from error
        logger.info(
            "MongoDB store opened",
            extra={"database": store._database.name, "retention_days": retention_days},
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
        requests = [InsertOne(_snapshot_document(snapshot, stored_at)) for snapshot in snapshots]
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

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]:
        if not auction_ids:
            return {}
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

    async def set_viewer_analytics(self, auction_id: str, enabled: bool, now: float) -> AuctionSettings:
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

    async def query_points(self, query: AnalyticsRange, bucket_seconds: int) -> list[AnalyticsPoint]:
        bucket_millis = (bucket_seconds or 1) * _MILLIS_PER_SECOND
        epoch_millis = {"$toLong": "$timestamp"}
        pipeline: list[Document] = [
            {"$match": _range_match(query)},
            # Sorted on the unique index, so $last below is each bucket's latest snapshot.
            {"$sort": {"auction": 1, "timestamp": 1}},
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
