"""Auction events in the snapshot store's MongoDB database, expired by a TTL index like the snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, InsertOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from ingest_service import audience
from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, EventOutcome, LotOutcome
from ingest_service.domain import AnalyticsRange, StorageUnavailable
from ingest_service.storage.event_port import EVENT_COLLECTION, FunnelCounts
from ingest_service.storage.mongo_store import MongoSnapshotStore, _range_match
from ingest_service.storage.port import SNAPSHOT_COLLECTION
from ingest_service.storage.snapshot_details import SnapshotDetail

logger = logging.getLogger(__name__)

Document = dict[str, Any]

EVENT_TIME_INDEX = "auction_occurred_at"
EVENT_TTL_INDEX = "occurred_at_ttl"
_DUPLICATE_KEY = 11000
_DETAIL_PROJECTION = {
    "_id": 0,
    "timestamp": 1,
    "viewerCount": 1,
    "avgViewers": 1,
    "peakViewers": 1,
    "minViewers": 1,
    "sampleCount": 1,
    "samples": 1,
    "identifiedViewerSketch": 1,
    "anonymousViewerSketch": 1,
}

_COUNTS_PROJECTION = {
    name: shown
    for name, shown in _DETAIL_PROJECTION.items()
    if name not in ("identifiedViewerSketch", "anonymousViewerSketch")
}


def _as_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class MongoAuctionEventStore:
    """The AuctionEventStore port in ``auctionevents``, keyed by ``event_id`` (its ``_id``).

    Written with the snapshots' write concern through the snapshot store's client; retention is a
    TTL index on ``occurredAt`` with the snapshots' ``expireAfterSeconds``.
    """

    def __init__(self, snapshots: MongoSnapshotStore, clock: Callable[[], float]) -> None:
        self._snapshots = snapshots
        self._clock = clock
        database = snapshots.database
        snapshot_collection = database.get_collection(SNAPSHOT_COLLECTION)
        self._events: AsyncCollection[Document] = database.get_collection(
            EVENT_COLLECTION,
            write_concern=snapshot_collection.write_concern,
            read_preference=snapshot_collection.read_preference,
        )
        self._snapshot_reads: AsyncCollection[Document] = snapshot_collection

    @classmethod
    async def open(
        cls, snapshots: MongoSnapshotStore, *, retention_days: int, clock: Callable[[], float]
    ) -> MongoAuctionEventStore:
        """Ensures the events' indexes (the TTL one following ``retention_days``).

        Raises:
            StorageUnavailable: the indexes cannot be set.
        """
        store = cls(snapshots, clock)
        retention_seconds = retention_days * 86_400
        try:
            await store._events.create_index(
                [("auction", ASCENDING), ("occurredAt", ASCENDING), ("_id", ASCENDING)], name=EVENT_TIME_INDEX
            )
            existing = (await store._events.index_information()).get(EVENT_TTL_INDEX)
            if existing is None:
                await store._events.create_index(
                    [("occurredAt", ASCENDING)], expireAfterSeconds=retention_seconds, name=EVENT_TTL_INDEX
                )
            elif existing.get("expireAfterSeconds") != retention_seconds:
                await snapshots.database.command(
                    "collMod",
                    EVENT_COLLECTION,
                    index={"name": EVENT_TTL_INDEX, "expireAfterSeconds": retention_seconds},
                )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return store

    async def insert_events(self, events: Sequence[AuctionEvent]) -> list[EventOutcome]:
        if not events:
            return []
        stored_at = datetime.now(UTC)
        documents = [self._document(event, stored_at) for event in events]
        outcomes = [EventOutcome.STORED] * len(events)
        try:
            await self._events.bulk_write([InsertOne(document) for document in documents], ordered=False)
        except BulkWriteError as error:
            errors: list[Document] = error.details.get("writeErrors", [])
            others = [each for each in errors if each.get("code") != _DUPLICATE_KEY]
            if others or error.details.get("writeConcernErrors"):
                raise StorageUnavailable(
                    f"MongoDB bulk write failed: {others[:3] or error.details['writeConcernErrors'][:3]}"
                ) from error
            for each in errors:
                outcomes[each["index"]] = EventOutcome.DUPLICATE
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return outcomes

    async def query_events(
        self,
        query: AnalyticsRange,
        kinds: Collection[EventKind] = (),
        limit: int | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[AuctionEvent]:
        match = _events_match(query, kinds)
        if after is not None:
            at = _as_datetime(after[0])
            match["$or"] = [{"occurredAt": {"$gt": at}}, {"occurredAt": at, "_id": {"$gt": after[1]}}]
        try:
            cursor = self._events.find(match).sort([("occurredAt", ASCENDING), ("_id", ASCENDING)])
            if limit is not None:
                cursor = cursor.limit(limit)
            documents = await cursor.to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return [self._event_of(query.auction_id, document) for document in documents]

    async def funnel_counts(self, query: AnalyticsRange) -> FunnelCounts:
        # Grouped on the server: one document per bidder, and one per sold lot and its winner,
        # rather than every event of the range.
        bids = [
            {"$match": _events_match(query, (EventKind.BID_PLACED,))},
            {"$group": {"_id": "$bidderId", "bids": {"$sum": 1}}},
        ]
        sold = {**_events_match(query, (EventKind.LOT_CLOSED,)), "outcome": LotOutcome.SOLD.value}
        sales = [{"$match": sold}, {"$group": {"_id": {"lot": "$lotId", "winner": "$bidderId"}}}]
        try:
            bidders = await (await self._events.aggregate(bids)).to_list()
            lots = await (await self._events.aggregate(sales)).to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return FunnelCounts(
            bidders=len(bidders),
            bids=sum(int(document["bids"]) for document in bidders),
            lots_sold=len({document["_id"]["lot"] for document in lots}),
            winners=len({document["_id"]["winner"] for document in lots}),
        )

    async def lot_facts(self, auction_id: str, since: float | None) -> list[audience.LotFacts]:
        lot_kinds = (EventKind.LOT_OPENED, EventKind.LOT_CLOSED, EventKind.BID_PLACED)
        # Events are timed to the fraction of a second; the range's bounds are compared, never rounded.
        from_since = AnalyticsRange(auction_id, since, None)  # type: ignore[arg-type]
        events = await self.query_events(from_since, lot_kinds)
        return audience.lot_facts(events)

    async def snapshot_details(self, query: AnalyticsRange, sketches: bool = True) -> list[SnapshotDetail]:
        projection = _DETAIL_PROJECTION if sketches else _COUNTS_PROJECTION
        try:
            cursor = self._snapshot_reads.find(_range_match(query), projection).sort("timestamp", ASCENDING)
            documents = await cursor.to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        details = []
        for d in documents:
            # A document another program wrote without counts has nothing to tell; left out.
            if not isinstance(d.get("viewerCount"), int | float) or not isinstance(
                d.get("timestamp"), datetime
            ):
                continue
            details.append(
                SnapshotDetail(
                    minute_start=int(d["timestamp"].timestamp()),
                    viewer_count=int(d["viewerCount"]),
                    avg_viewers=float(d.get("avgViewers") or d["viewerCount"]),
                    peak_viewers=int(d.get("peakViewers") or d["viewerCount"]),
                    min_viewers=int(d.get("minViewers") or 0),
                    sample_count=int(d.get("sampleCount", 1)),
                    samples=tuple(int(each) for each in d.get("samples") or ()),
                    identified_sketch=bytes(d.get("identifiedViewerSketch") or b""),
                    anonymous_sketch=bytes(d.get("anonymousViewerSketch") or b""),
                )
            )
        return details

    async def purge_expired(self) -> int:
        # The TTL index removes expired events on the server's clock.
        return 0

    async def close(self) -> None:
        return None

    def _document(self, event: AuctionEvent, stored_at: datetime) -> Document:
        return {
            "_id": event.event_id,
            "auction": self._snapshots.stored_auction(event.auction_id),
            "occurredAt": _as_datetime(event.occurred_at),
            "kind": event.kind.value,
            "lotId": event.lot_id,
            "title": event.title,
            "outcome": event.outcome.value if event.outcome else None,
            "amount": event.amount,
            "currency": event.currency,
            "bidderId": event.bidder_id,
            "channel": event.channel.value if event.channel else None,
            "createdAt": stored_at,
        }

    @staticmethod
    def _event_of(auction_id: str, d: Document) -> AuctionEvent:
        return AuctionEvent(
            event_id=str(d["_id"]),
            auction_id=auction_id,
            occurred_at=d["occurredAt"].timestamp(),
            kind=EventKind(d["kind"]),
            lot_id=d.get("lotId", ""),
            title=d.get("title", ""),
            outcome=LotOutcome(d["outcome"]) if d.get("outcome") else None,
            amount=int(d.get("amount", 0)),
            currency=d.get("currency", ""),
            bidder_id=d.get("bidderId", ""),
            channel=BidChannel(d["channel"]) if d.get("channel") else None,
        )


def _events_match(query: AnalyticsRange, kinds: Collection[EventKind]) -> Document:
    """The auction's events with ``occurredAt`` in the range, of ``kinds`` (empty: every kind)."""
    match: Document = {"auction": _range_match(query)["auction"]}
    bounds: Document = {}
    if query.start is not None:
        bounds["$gte"] = _as_datetime(query.start)
    if query.end is not None:
        bounds["$lt"] = _as_datetime(query.end)
    if bounds:
        match["occurredAt"] = bounds
    if kinds:
        match["kind"] = {"$in": [kind.value for kind in kinds]}
    return match
