"""Auction events in the snapshot store's MongoDB database, expired by a TTL index like the snapshots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from ingest_service import audience
from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, EventOutcome, LotOutcome
from ingest_service.domain import AnalyticsRange, StorageUnavailable
from ingest_service.storage.event_port import EVENT_COLLECTION, LOT_COLLECTION, FunnelCounts
from ingest_service.storage.lot_summaries import LotAnswer, horizon, lot_answer
from ingest_service.storage.mongo_store import MongoSnapshotStore, _range_match
from ingest_service.storage.port import SNAPSHOT_COLLECTION
from ingest_service.storage.snapshot_details import SnapshotDetail

logger = logging.getLogger(__name__)

Document = dict[str, Any]

EVENT_TIME_INDEX = "auction_occurred_at"
EVENT_TTL_INDEX = "occurred_at_ttl"
EVENT_LOT_INDEX = "auction_kind_lot_occurred_at"
LOT_KEY_INDEX = "auction_lot"
LOT_TTL_INDEX = "last_opened_at_ttl"
_LOT_KINDS = (EventKind.LOT_OPENED, EventKind.LOT_CLOSED, EventKind.BID_PLACED)
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


async def _ensure_ttl(
    snapshots: MongoSnapshotStore,
    collection: AsyncCollection[Document],
    name: str,
    field: str,
    retention_seconds: int,
) -> None:
    """The TTL index ``name`` on ``field``, its ``expireAfterSeconds`` changed in place when it differs."""
    existing = (await collection.index_information()).get(name)
    if existing is None:
        await collection.create_index([(field, ASCENDING)], expireAfterSeconds=retention_seconds, name=name)
    elif existing.get("expireAfterSeconds") != retention_seconds:
        await snapshots.database.command(
            "collMod", collection.name, index={"name": name, "expireAfterSeconds": retention_seconds}
        )


def _as_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class MongoAuctionEventStore:
    """The AuctionEventStore port in ``auctionevents``, keyed by ``event_id`` (its ``_id``).

    Written with the snapshots' write concern through the snapshot store's client; retention is a
    TTL index on ``occurredAt`` with the snapshots' ``expireAfterSeconds``. Each lot's facts are kept
    in ``auctionlots`` (``storage.lot_summaries``), recomputed from the lot's events after every
    write that holds one of them, expired with the lot's last opening.
    """

    def __init__(
        self, snapshots: MongoSnapshotStore, clock: Callable[[], float], retention_seconds: int
    ) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._retention_seconds = retention_seconds
        database = snapshots.database
        snapshot_collection = database.get_collection(SNAPSHOT_COLLECTION)
        self._events: AsyncCollection[Document] = database.get_collection(
            EVENT_COLLECTION,
            write_concern=snapshot_collection.write_concern,
            read_preference=snapshot_collection.read_preference,
        )
        self._lots: AsyncCollection[Document] = database.get_collection(
            LOT_COLLECTION,
            write_concern=snapshot_collection.write_concern,
            read_preference=snapshot_collection.read_preference,
        )
        self._snapshot_reads: AsyncCollection[Document] = snapshot_collection

    @classmethod
    async def open(
        cls, snapshots: MongoSnapshotStore, *, retention_days: int, clock: Callable[[], float]
    ) -> MongoAuctionEventStore:
        """Ensures the events' and the kept lots' indexes (the TTL ones following ``retention_days``).

        A database whose events were stored before the kept lots existed gains them here.

        Raises:
            StorageUnavailable: the indexes cannot be set, or the kept lots not computed.
        """
        retention_seconds = retention_days * 86_400
        store = cls(snapshots, clock, retention_seconds)
        try:
            lots_existed = LOT_COLLECTION in await snapshots.database.list_collection_names()
            await store._events.create_index(
                [("auction", ASCENDING), ("occurredAt", ASCENDING), ("_id", ASCENDING)], name=EVENT_TIME_INDEX
            )
            # A lot's own events (its facts recomputed), an auction's closes or bids, by time.
            await store._events.create_index(
                [
                    ("auction", ASCENDING),
                    ("kind", ASCENDING),
                    ("lotId", ASCENDING),
                    ("occurredAt", ASCENDING),
                ],
                name=EVENT_LOT_INDEX,
            )
            await store._lots.create_index(
                [("auction", ASCENDING), ("lotId", ASCENDING)], unique=True, name=LOT_KEY_INDEX
            )
            await _ensure_ttl(snapshots, store._events, EVENT_TTL_INDEX, "occurredAt", retention_seconds)
            # A lot's kept facts go with its last opening: the per-lot query no longer sees the lot.
            await _ensure_ttl(snapshots, store._lots, LOT_TTL_INDEX, "lastOpenedAt", retention_seconds)
            if not lots_existed:
                # Events stored by a version that kept no lots: their lots' facts, computed once.
                opened = store._events.aggregate(
                    [
                        {"$match": {"kind": EventKind.LOT_OPENED.value}},
                        {"$group": {"_id": {"auction": "$auction", "lot": "$lotId"}}},
                    ]
                )
                touched: dict[str, set[str]] = {}
                for group in await (await opened).to_list():
                    touched.setdefault(str(group["_id"]["auction"]), set()).add(group["_id"]["lot"])
                await store._recompute_lots(touched)
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
        # Duplicates too: a batch re-sent after a write that failed before this point heals its lots.
        await self._keep_lots(events)
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
        match: Document = {"auction": self._auction_match(auction_id)}
        if since is not None:
            match["lastOpenedAt"] = {"$gte": _as_datetime(since)}
        try:
            documents = await self._lots.find(match, {"_id": 0}).to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        horizon_at = horizon(self._clock(), self._retention_seconds)
        facts: list[audience.LotFacts] = []
        recompute: set[str] = set()
        for document in documents:
            kept, last_opened_at = _facts_of(document)
            answer = lot_answer(kept, last_opened_at, since, horizon_at)
            if answer is LotAnswer.KEPT:
                facts.append(kept)
            elif answer is LotAnswer.RECOMPUTE:
                recompute.add(kept.lot_id)
        if recompute:
            for lot_events in (await self._lot_events(auction_id, recompute, since)).values():
                facts += audience.lot_facts(lot_events)
        facts.sort(key=lambda each: (each.opened_at, each.lot_id))
        return facts

    async def _lot_events(
        self, auction_id: str, lot_ids: Collection[str], since: float | None
    ) -> dict[str, list[AuctionEvent]]:
        """The lots' opening, close and bid events from ``since`` on, oldest first, per lot."""
        match: Document = {
            "auction": self._auction_match(auction_id),
            "kind": {"$in": [kind.value for kind in _LOT_KINDS]},
            "lotId": {"$in": sorted(lot_ids)},
        }
        if since is not None:
            match["occurredAt"] = {"$gte": _as_datetime(since)}
        try:
            cursor = self._events.find(match).sort([("occurredAt", ASCENDING), ("_id", ASCENDING)])
            documents = await cursor.to_list()
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        by_lot: dict[str, list[AuctionEvent]] = {lot_id: [] for lot_id in lot_ids}
        for document in documents:
            by_lot[document["lotId"]].append(self._event_of(auction_id, document))
        return by_lot

    async def _keep_lots(self, events: Sequence[AuctionEvent]) -> None:
        """Recomputes the kept facts of every lot ``events`` touch, each from all its own events.

        Two writers may recompute one lot at once from different reads; the facts of more events
        win (events are only added, until they expire), so an older read never replaces a newer.
        """
        touched: dict[str, set[str]] = {}
        for event in events:
            if event.kind in _LOT_KINDS:
                touched.setdefault(event.auction_id, set()).add(event.lot_id)
        await self._recompute_lots(touched)

    async def _recompute_lots(self, touched: dict[str, set[str]]) -> None:
        """Recomputes the kept facts of the lots ``touched`` names per auction."""
        writes: list[ReplaceOne[Document] | DeleteOne] = []
        for auction_id, lot_ids in touched.items():
            for lot_id, lot_events in (await self._lot_events(auction_id, lot_ids, None)).items():
                key: Document = {
                    "auction": self._snapshots.stored_auction(auction_id),
                    "lotId": lot_id,
                    "events": {"$lte": len(lot_events)},
                }
                facts = audience.lot_facts(lot_events)
                if not facts:
                    writes.append(DeleteOne(key))
                    continue
                last_opened_at = max(e.occurred_at for e in lot_events if e.kind is EventKind.LOT_OPENED)
                document = _lot_document(facts[0], last_opened_at, len(lot_events))
                document["auction"] = key["auction"]
                writes.append(ReplaceOne(key, document, upsert=True))
        if not writes:
            return
        try:
            await self._lots.bulk_write(writes, ordered=False)
        except BulkWriteError as error:
            # A duplicate key: the lot's document holds the facts of more events already.
            errors: list[Document] = error.details.get("writeErrors", [])
            others = [each for each in errors if each.get("code") != _DUPLICATE_KEY]
            if others or error.details.get("writeConcernErrors"):
                raise StorageUnavailable(
                    f"MongoDB bulk write failed: {others[:3] or error.details['writeConcernErrors'][:3]}"
                ) from error
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    def _auction_match(self, auction_id: str) -> Any:
        return _range_match(AnalyticsRange(auction_id, None, None))["auction"]

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


def _lot_document(facts: audience.LotFacts, last_opened_at: float, events: int) -> Document:
    close = facts.close
    return {
        "lotId": facts.lot_id,
        "title": facts.title,
        "openedAt": _as_datetime(facts.opened_at),
        "lastOpenedAt": _as_datetime(last_opened_at),
        "closedAt": None if close is None else _as_datetime(close.closed_at),
        "outcome": None if close is None or close.outcome is None else close.outcome.value,
        "amount": 0 if close is None else close.amount,
        "currency": "" if close is None else close.currency,
        "winnerBidderId": "" if close is None else close.winner_bidder_id,
        "bids": facts.bids,
        "bidders": facts.bidders,
        "lastBidAt": None if facts.last_bid_at is None else _as_datetime(facts.last_bid_at),
        # How many of the lot's events these facts were computed from.
        "events": events,
    }


def _facts_of(d: Document) -> tuple[audience.LotFacts, float]:
    """A kept lot document's facts and the time of its last opening."""
    close = None
    if d.get("closedAt") is not None:
        close = audience.LotClose(
            d["closedAt"].timestamp(),
            LotOutcome(d["outcome"]) if d.get("outcome") else None,
            int(d.get("amount", 0)),
            str(d.get("currency", "")),
            str(d.get("winnerBidderId", "")),
        )
    last_bid_at = d.get("lastBidAt")
    facts = audience.LotFacts(
        str(d["lotId"]),
        str(d.get("title", "")),
        d["openedAt"].timestamp(),
        close,
        int(d.get("bids", 0)),
        int(d.get("bidders", 0)),
        None if last_bid_at is None else last_bid_at.timestamp(),
    )
    return facts, d["lastOpenedAt"].timestamp()


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
