"""Alert rules and deliveries in the snapshot store's MongoDB database (two collections of their own)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from ingest_service.alerts.domain import (
    MAX_RULES_PER_AUCTION,
    AlertDelivery,
    AlertKind,
    AlertMetric,
    AlertRule,
    AlertRuleNotFound,
    AlertRuleSpec,
    DeliveryStatus,
    TooManyAlertRules,
)
from ingest_service.alerts.store import (
    DELETED_RULE_COLLECTION,
    DELETED_RULES_KEPT_SECONDS,
    DELIVERY_COLLECTION,
    RULE_COLLECTION,
    UPDATED_AT_TOLERANCE_SECONDS,
    ArmedReport,
)
from ingest_service.domain import StorageUnavailable
from ingest_service.storage.mongo_store import MongoSnapshotStore

logger = logging.getLogger(__name__)

Document = dict[str, Any]

DUE_INDEX = "status_next_attempt"
BY_AUCTION_INDEX = "auction_created"
EXPIRY_INDEX = "expire_at_ttl"
RULES_BY_AUCTION_INDEX = "auction_created"
RULES_BY_CHANGE_INDEX = "updated_id"
DELETIONS_BY_TIME_INDEX = "deleted_at"


class MongoAlertStore:
    """The AlertStore port on MongoDB, keyed by rule id and delivery id (their ``_id``).

    Written with a majority write concern and read from the primary: the queue's claims are
    ``find_one_and_update`` calls, atomic per delivery, so any number of ingest replicas share the
    queue and each attempt is one replica's. A finished delivery gets ``expireAt`` (its creation plus
    the snapshots' retention), which a TTL index honours; a pending one has none and stays queued.
    """

    def __init__(
        self, snapshots: MongoSnapshotStore, retention_seconds: int, clock: Callable[[], float]
    ) -> None:
        database = snapshots.database
        concern = WriteConcern(w="majority")
        self._rules: AsyncCollection[Document] = database.get_collection(
            RULE_COLLECTION, write_concern=concern
        )
        self._deliveries: AsyncCollection[Document] = database.get_collection(
            DELIVERY_COLLECTION, write_concern=concern
        )
        # Deleted rules' ids, for the evaluators' listings of changes; removed by a TTL index.
        self._deletions: AsyncCollection[Document] = database.get_collection(
            DELETED_RULE_COLLECTION, write_concern=concern
        )
        self._retention_seconds = retention_seconds
        self._clock = clock

    @classmethod
    async def open(
        cls, snapshots: MongoSnapshotStore, *, retention_days: int, clock: Callable[[], float]
    ) -> MongoAlertStore:
        """Ensures the collections' indexes.

        Raises:
            StorageUnavailable: the indexes cannot be set.
        """
        store = cls(snapshots, retention_days * 86_400, clock)
        try:
            await store._rules.create_index(
                [("auction", ASCENDING), ("createdAt", ASCENDING)], name=RULES_BY_AUCTION_INDEX
            )
            await store._rules.create_index(
                [("updatedAt", ASCENDING), ("_id", ASCENDING)], name=RULES_BY_CHANGE_INDEX
            )
            await store._deletions.create_index([("deletedAt", ASCENDING)], name=DELETIONS_BY_TIME_INDEX)
            await store._deletions.create_index(
                [("expireAt", ASCENDING)], expireAfterSeconds=0, name=EXPIRY_INDEX
            )
            await store._deliveries.create_index(
                [("status", ASCENDING), ("nextAttemptAt", ASCENDING)], name=DUE_INDEX
            )
            await store._deliveries.create_index(
                [("auction", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
                name=BY_AUCTION_INDEX,
            )
            await store._deliveries.create_index(
                [("expireAt", ASCENDING)], expireAfterSeconds=0, name=EXPIRY_INDEX
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return store

    async def create_rule(self, rule: AlertRule) -> None:
        try:
            # Counted, then inserted: two concurrent creations may pass the bound by one each, which
            # the bound (a cost limit, not a contract) tolerates.
            if await self._rules.count_documents({"auction": rule.auction_id}) >= MAX_RULES_PER_AUCTION:
                raise TooManyAlertRules(f"an auction holds at most {MAX_RULES_PER_AUCTION} alert rules")
            await self._rules.insert_one(_rule_document(rule))
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def get_rule(self, auction_id: str, rule_id: str) -> AlertRule | None:
        try:
            document = await self._rules.find_one({"_id": rule_id, "auction": auction_id})
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return None if document is None else _rule_of(document)

    async def list_rules(self, auction_id: str) -> list[AlertRule]:
        try:
            documents = (
                await self._rules.find({"auction": auction_id})
                .sort([("createdAt", ASCENDING), ("_id", ASCENDING)])
                .to_list()
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return [_rule_of(document) for document in documents]

    async def update_rule(self, auction_id: str, rule_id: str, spec: AlertRuleSpec, now: float) -> AlertRule:
        try:
            document = await self._rules.find_one_and_update(
                {"_id": rule_id, "auction": auction_id},
                # A new spec, a new evaluation state.
                {"$set": {**_spec_fields(spec), "updatedAt": now}, "$unset": {"armed": ""}},
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        if document is None:
            raise AlertRuleNotFound(rule_id)
        return _rule_of(document)

    async def delete_rule(self, auction_id: str, rule_id: str) -> bool:
        try:
            result = await self._rules.delete_one({"_id": rule_id, "auction": auction_id})
            if result.deleted_count == 1:
                now = self._clock()
                await self._deletions.replace_one(
                    {"_id": rule_id},
                    {
                        "_id": rule_id,
                        "deletedAt": now,
                        "expireAt": datetime.fromtimestamp(now + DELETED_RULES_KEPT_SECONDS, UTC),
                    },
                    upsert=True,
                )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return result.deleted_count == 1

    async def list_rule_changes(
        self, since: float, after: tuple[float, str] | None, limit: int
    ) -> list[AlertRule]:
        query: Document = {"updatedAt": {"$gte": since}}
        if after is not None:
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"updatedAt": {"$gt": after[0]}},
                            {"updatedAt": after[0], "_id": {"$gt": after[1]}},
                        ]
                    },
                ]
            }
        try:
            documents = (
                await self._rules.find(query)
                .sort([("updatedAt", ASCENDING), ("_id", ASCENDING)])
                .limit(limit)
                .to_list()
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return [_rule_of(document) for document in documents]

    async def list_deleted_rules(self, since: float) -> list[str]:
        try:
            documents = (
                await self._deletions.find({"deletedAt": {"$gte": since}})
                .sort("deletedAt", ASCENDING)
                .to_list()
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return [str(document["_id"]) for document in documents]

    async def list_active_rules(self, after_rule_id: str, limit: int) -> list[AlertRule]:
        try:
            documents = (
                await self._rules.find({"paused": False, "_id": {"$gt": after_rule_id}})
                .sort("_id", ASCENDING)
                .limit(limit)
                .to_list()
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return [_rule_of(document) for document in documents]

    async def record_firing(
        self,
        auction_id: str,
        rule_id: str,
        fired_at: float,
        cooldown_seconds: float,
        *,
        firing_id: str = "",
        require_armed: bool = False,
    ) -> bool:
        # One conditional update of the rule's own document: atomic, so of two evaluators reporting
        # one crossing within the cooldown (or, with require_armed, once it is disarmed) only one
        # matches.
        condition: Document = {
            "_id": rule_id,
            "auction": auction_id,
            "$or": [
                {"lastFiredAt": {"$exists": False}},
                {"lastFiredAt": {"$lte": fired_at - cooldown_seconds}},
            ],
        }
        if require_armed:
            condition["armed"] = {"$ne": False}
        try:
            result = await self._rules.update_one(
                condition, {"$set": {"lastFiredAt": fired_at, "armed": False, "lastFiringId": firing_id}}
            )
            if result.matched_count == 1:
                return True
            # A retry of the firing recorded last (its answer lost) passes again.
            return bool(firing_id) and (
                await self._rules.find_one({"_id": rule_id, "auction": auction_id, "lastFiringId": firing_id})
                is not None
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error

    async def record_armed(self, reports: list[ArmedReport]) -> int:
        recorded = 0
        try:
            # One conditional update per report, in order: only the spec the state was reached under.
            for report in reports:
                result = await self._rules.update_one(
                    {
                        "_id": report.rule_id,
                        "auction": report.auction_id,
                        "updatedAt": {
                            "$gte": report.rule_updated_at - UPDATED_AT_TOLERANCE_SECONDS,
                            "$lte": report.rule_updated_at + UPDATED_AT_TOLERANCE_SECONDS,
                        },
                    },
                    {"$set": {"armed": report.armed}},
                )
                recorded += result.matched_count
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return recorded

    async def get_delivery(self, delivery_id: str) -> AlertDelivery | None:
        try:
            document = await self._deliveries.find_one({"_id": delivery_id})
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return None if document is None else _delivery_of(document)

    async def enqueue_delivery(self, delivery: AlertDelivery) -> AlertDelivery:
        try:
            try:
                await self._deliveries.insert_one(_delivery_document(delivery))
                return delivery
            except DuplicateKeyError:
                existing = await self._deliveries.find_one({"_id": delivery.delivery_id})
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        assert existing is not None, "a delivery is removed only once finished and expired"
        return _delivery_of(existing)

    async def claim_due_deliveries(self, now: float, lease_seconds: float, limit: int) -> list[AlertDelivery]:
        claimed: list[AlertDelivery] = []
        try:
            for _ in range(limit):
                document = await self._deliveries.find_one_and_update(
                    {"status": DeliveryStatus.PENDING.value, "nextAttemptAt": {"$lte": now}},
                    {"$inc": {"attempts": 1}, "$set": {"nextAttemptAt": now + lease_seconds}},
                    sort=[("nextAttemptAt", ASCENDING)],
                    return_document=ReturnDocument.AFTER,
                )
                if document is None:
                    break
                claimed.append(_delivery_of(document))
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return claimed

    async def finish_attempt(self, delivery: AlertDelivery) -> bool:
        fields: Document = {
            "status": delivery.status.value,
            "lastError": delivery.last_error,
            "nextAttemptAt": delivery.next_attempt_at,
            "lastAttemptAt": delivery.last_attempt_at,
            "deliveredAt": delivery.delivered_at,
            "lastStatusCode": delivery.last_status_code,
        }
        if delivery.status is not DeliveryStatus.PENDING:
            fields["expireAt"] = datetime.fromtimestamp(delivery.created_at + self._retention_seconds, UTC)
        try:
            result = await self._deliveries.update_one(
                {
                    "_id": delivery.delivery_id,
                    "attempts": delivery.attempts,
                    "status": DeliveryStatus.PENDING.value,
                },
                {"$set": fields},
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return result.modified_count == 1

    async def list_deliveries(
        self, auction_id: str, rule_id: str | None, limit: int, before: tuple[float, str] | None = None
    ) -> list[AlertDelivery]:
        match: Document = {"auction": auction_id}
        if rule_id is not None:
            match["ruleId"] = rule_id
        if before is not None:
            match["$or"] = [
                {"createdAt": {"$lt": before[0]}},
                {"createdAt": before[0], "_id": {"$lt": before[1]}},
            ]
        try:
            documents = (
                await self._deliveries.find(match)
                .sort([("createdAt", DESCENDING), ("_id", DESCENDING)])
                .limit(limit)
                .to_list()
            )
        except PyMongoError as error:
            raise StorageUnavailable(f"MongoDB: {error}") from error
        return [_delivery_of(document) for document in documents]

    async def purge_expired(self) -> int:
        """MongoDB's TTL index removes finished deliveries; nothing to do here."""
        return 0

    async def close(self) -> None:
        """The client is the snapshot store's, closed with it."""


def _spec_fields(spec: AlertRuleSpec) -> Document:
    return {
        "kind": spec.kind.value,
        "metric": spec.metric.value,
        "threshold": spec.threshold,
        "windowSeconds": spec.window_seconds,
        "hysteresis": spec.hysteresis,
        "cooldownSeconds": spec.cooldown_seconds,
        "webhookUrl": spec.webhook_url,
        "paused": spec.paused,
    }


def _rule_document(rule: AlertRule) -> Document:
    return {
        "_id": rule.rule_id,
        "auction": rule.auction_id,
        **_spec_fields(rule.spec),
        "secret": rule.secret,
        "createdAt": rule.created_at,
        "updatedAt": rule.updated_at,
    }


def _rule_of(document: Document) -> AlertRule:
    spec = AlertRuleSpec(
        kind=AlertKind(document["kind"]),
        metric=AlertMetric(document["metric"]),
        threshold=int(document["threshold"]),
        window_seconds=int(document["windowSeconds"]),
        hysteresis=int(document["hysteresis"]),
        cooldown_seconds=int(document["cooldownSeconds"]),
        webhook_url=str(document["webhookUrl"]),
        paused=bool(document["paused"]),
    )
    return AlertRule(
        str(document["_id"]),
        str(document["auction"]),
        spec,
        str(document["secret"]),
        float(document["createdAt"]),
        float(document["updatedAt"]),
        armed=None if document.get("armed") is None else bool(document["armed"]),
    )


def _delivery_document(d: AlertDelivery) -> Document:
    return {
        "_id": d.delivery_id,
        "ruleId": d.rule_id,
        "auction": d.auction_id,
        "eventType": d.event_type,
        "payload": d.payload,
        "webhookUrl": d.webhook_url,
        "secret": d.secret,
        "createdAt": d.created_at,
        "status": d.status.value,
        "attempts": d.attempts,
        "lastError": d.last_error,
        "nextAttemptAt": d.next_attempt_at,
        "lastAttemptAt": d.last_attempt_at,
        "deliveredAt": d.delivered_at,
        "lastStatusCode": d.last_status_code,
    }


def _delivery_of(document: Document) -> AlertDelivery:
    last_at = document.get("lastAttemptAt")
    delivered = document.get("deliveredAt")
    return AlertDelivery(
        delivery_id=str(document["_id"]),
        rule_id=str(document["ruleId"]),
        auction_id=str(document["auction"]),
        event_type=str(document["eventType"]),
        payload=str(document["payload"]),
        webhook_url=str(document["webhookUrl"]),
        secret=str(document["secret"]),
        created_at=float(document["createdAt"]),
        status=DeliveryStatus(document["status"]),
        attempts=int(document["attempts"]),
        last_error=str(document.get("lastError", "")),
        next_attempt_at=float(document["nextAttemptAt"]),
        last_attempt_at=None if last_at is None else float(last_at),
        delivered_at=None if delivered is None else float(delivered),
        last_status_code=int(document.get("lastStatusCode", 0)),
    )
