"""``AlertRuleService``: seller alert rules per auction, test deliveries, the delivery log, and the
evaluator's two calls (the active rules, a firing)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import math
import re
from collections.abc import Callable

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2

from ingest_service.alerts.domain import (
    EVENT_FIRED,
    EVENT_TEST,
    AlertDelivery,
    AlertKind,
    AlertMetric,
    AlertRule,
    AlertRuleNotFound,
    AlertRuleSpec,
    DeliveryStatus,
    TooManyAlertRules,
    new_delivery,
    new_rule_id,
    new_secret,
)
from ingest_service.alerts.store import DELETED_RULES_KEPT_SECONDS, AlertStore, ArmedReport
from ingest_service.alerts.targets import TargetPolicy, TargetRefused
from ingest_service.domain import AuctionIdType, StorageUnavailable
from ingest_service.grpc_api.aborts import abort, abort_storage_unavailable
from ingest_service.grpc_api.conversions import timestamp_of
from ingest_service.validation import accepted_auction_id_problem
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

KIND_FROM_WIRE = {
    alerts_pb2.ALERT_KIND_ABOVE: AlertKind.ABOVE,
    alerts_pb2.ALERT_KIND_BELOW: AlertKind.BELOW,
    alerts_pb2.ALERT_KIND_DROP_PERCENT: AlertKind.DROP_PERCENT,
    alerts_pb2.ALERT_KIND_ZERO_WHILE_LIVE: AlertKind.ZERO_WHILE_LIVE,
}
KIND_TO_WIRE = {kind: wire for wire, kind in KIND_FROM_WIRE.items()}
METRIC_FROM_WIRE = {
    alerts_pb2.ALERT_METRIC_CONNECTIONS: AlertMetric.CONNECTIONS,
    alerts_pb2.ALERT_METRIC_UNIQUE_VIEWERS: AlertMetric.UNIQUE_VIEWERS,
}
METRIC_TO_WIRE = {metric: wire for wire, metric in METRIC_FROM_WIRE.items()}
STATUS_TO_WIRE = {
    DeliveryStatus.PENDING: alerts_pb2.ALERT_DELIVERY_STATUS_PENDING,
    DeliveryStatus.DELIVERED: alerts_pb2.ALERT_DELIVERY_STATUS_DELIVERED,
    DeliveryStatus.FAILED: alerts_pb2.ALERT_DELIVERY_STATUS_FAILED,
}
DEFAULT_DELIVERY_PAGE, MAX_DELIVERY_PAGE = 50, 200
DEFAULT_RULE_PAGE, MAX_RULE_PAGE = 500, 1000
_RULE_ID = re.compile(r"rule_[0-9a-f]{24}")
_FIRING_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


_ARMED_TO_WIRE = {
    None: alerts_pb2.ALERT_ARMED_STATE_UNSPECIFIED,
    True: alerts_pb2.ALERT_ARMED_STATE_ARMED,
    False: alerts_pb2.ALERT_ARMED_STATE_DISARMED,
}
MAX_ARMED_REPORTS = 1000
# How far back of its cursor a listing of changes looks (see _list_changes). Also what the ingest
# replicas' clocks (on MongoDB, several write) may differ by.
CHANGES_MARGIN_SECONDS = 30.0


def rule_to_wire(rule: AlertRule) -> alerts_pb2.AlertRule:
    spec = rule.spec
    return alerts_pb2.AlertRule(
        rule_id=rule.rule_id,
        auction_id=rule.auction_id,
        spec=alerts_pb2.AlertRuleSpec(
            kind=KIND_TO_WIRE[spec.kind],
            metric=METRIC_TO_WIRE[spec.metric],
            threshold=spec.threshold,
            window_seconds=spec.window_seconds,
            hysteresis=spec.hysteresis,
            cooldown_seconds=spec.cooldown_seconds,
            webhook_url=spec.webhook_url,
            paused=spec.paused,
        ),
        created_at=timestamp_of(rule.created_at),
        updated_at=timestamp_of(rule.updated_at),
        armed_state=_ARMED_TO_WIRE[rule.armed],
    )


def delivery_to_wire(delivery: AlertDelivery) -> alerts_pb2.AlertDelivery:
    message = alerts_pb2.AlertDelivery(
        delivery_id=delivery.delivery_id,
        rule_id=delivery.rule_id,
        auction_id=delivery.auction_id,
        event_type=delivery.event_type,
        status=STATUS_TO_WIRE[delivery.status],
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        last_status_code=delivery.last_status_code,
        created_at=timestamp_of(delivery.created_at),
        payload=delivery.payload,
    )
    if delivery.last_attempt_at is not None:
        message.last_attempt_at.CopyFrom(timestamp_of(delivery.last_attempt_at))
    if delivery.status is DeliveryStatus.PENDING:
        message.next_attempt_at.CopyFrom(timestamp_of(delivery.next_attempt_at))
    if delivery.delivered_at is not None:
        message.delivered_at.CopyFrom(timestamp_of(delivery.delivered_at))
    return message


def _page_token(created_at: float, delivery_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{delivery_id}".encode()).decode()


def _position(token: str) -> tuple[float, str] | None:
    try:
        created_at, _, delivery_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        moment = float(created_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (moment, delivery_id) if math.isfinite(moment) and delivery_id else None


def _changes_cursor(moment: float) -> str:
    return base64.urlsafe_b64encode(f"changes|{moment!r}".encode()).decode()


def _moment_of_cursor(cursor: str) -> float | None:
    try:
        kind, _, moment = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        value = float(moment)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return value if kind == "changes" and math.isfinite(value) else None


def _seconds(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


class AlertRuleServicer:
    """The rules and the delivery log in ``store``; URLs checked against ``policy`` before storing.

    ``wake_sender`` tells this replica's sender that a delivery was queued, so it is sent at once
    rather than at the sender's next poll.
    """

    def __init__(
        self,
        store: AlertStore,
        policy: TargetPolicy,
        clock: Callable[[], float],
        log: RateLimitedLog,
        wake_sender: Callable[[], None],
        auction_id_type: AuctionIdType = AuctionIdType.AUTO,
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._log = log
        self._wake_sender = wake_sender
        self._auction_id_type = auction_id_type

    async def _auction(self, auction_id: str, context: grpc.aio.ServicerContext) -> str:
        problem = accepted_auction_id_problem(auction_id, self._auction_id_type)
        if problem:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"auction_id: {problem}")
        return auction_id

    async def _spec(self, wire: alerts_pb2.AlertRuleSpec, context: grpc.aio.ServicerContext) -> AlertRuleSpec:
        kind = KIND_FROM_WIRE.get(wire.kind)
        if kind is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "kind: must be set")
        metric = METRIC_FROM_WIRE.get(wire.metric)
        if metric is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "metric: must be set")
        spec = AlertRuleSpec(
            kind=kind,
            metric=metric,
            threshold=wire.threshold,
            window_seconds=wire.window_seconds,
            hysteresis=wire.hysteresis,
            cooldown_seconds=wire.cooldown_seconds,
            webhook_url=wire.webhook_url,
            paused=wire.paused,
        )
        invalid = spec.problem()
        if invalid is not None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(invalid))
        try:
            self._policy.check_url(spec.webhook_url)
        except TargetRefused as refused:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"webhook_url: {refused}")
        return spec

    async def _rule(self, auction_id: str, rule_id: str, context: grpc.aio.ServicerContext) -> AlertRule:
        rule = None
        if _RULE_ID.fullmatch(rule_id):
            try:
                rule = await self._store.get_rule(auction_id, rule_id)
            except StorageUnavailable as error:
                await abort_storage_unavailable(context, error, self._log)
        if rule is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such alert rule in this auction")
        return rule

    async def CreateAlertRule(
        self, request: alerts_pb2.CreateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.CreateAlertRuleResponse:
        auction_id = await self._auction(request.auction_id, context)
        spec = await self._spec(request.spec, context)
        now = self._clock()
        rule = AlertRule(new_rule_id(), auction_id, spec, new_secret(), now, now)
        try:
            await self._store.create_rule(rule)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        except TooManyAlertRules as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"auction_id: {error}")
        logger.info("Alert rule created", extra={"auction_id": auction_id, "rule_id": rule.rule_id})
        return alerts_pb2.CreateAlertRuleResponse(rule=rule_to_wire(rule), secret=rule.secret)

    async def ListAlertRules(
        self, request: alerts_pb2.ListAlertRulesRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListAlertRulesResponse:
        auction_id = await self._auction(request.auction_id, context)
        try:
            rules = await self._store.list_rules(auction_id)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        return alerts_pb2.ListAlertRulesResponse(rules=[rule_to_wire(rule) for rule in rules])

    async def _replace(
        self, auction_id: str, rule_id: str, spec: AlertRuleSpec, context: grpc.aio.ServicerContext
    ) -> AlertRule:
        if not _RULE_ID.fullmatch(rule_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such alert rule in this auction")
        try:
            rule = await self._store.update_rule(auction_id, rule_id, spec, self._clock())
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        except AlertRuleNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such alert rule in this auction")
        logger.info(
            "Alert rule changed", extra={"auction_id": auction_id, "rule_id": rule_id, "paused": spec.paused}
        )
        return rule

    async def UpdateAlertRule(
        self, request: alerts_pb2.UpdateAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.UpdateAlertRuleResponse:
        auction_id = await self._auction(request.auction_id, context)
        spec = await self._spec(request.spec, context)
        rule = await self._replace(auction_id, request.rule_id, spec, context)
        return alerts_pb2.UpdateAlertRuleResponse(rule=rule_to_wire(rule))

    async def SetAlertRulePaused(
        self, request: alerts_pb2.SetAlertRulePausedRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.SetAlertRulePausedResponse:
        auction_id = await self._auction(request.auction_id, context)
        current = await self._rule(auction_id, request.rule_id, context)
        spec = dataclasses.replace(current.spec, paused=request.paused)
        rule = await self._replace(auction_id, request.rule_id, spec, context)
        return alerts_pb2.SetAlertRulePausedResponse(rule=rule_to_wire(rule))

    async def DeleteAlertRule(
        self, request: alerts_pb2.DeleteAlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.DeleteAlertRuleResponse:
        auction_id = await self._auction(request.auction_id, context)
        deleted = False
        if _RULE_ID.fullmatch(request.rule_id):
            try:
                deleted = await self._store.delete_rule(auction_id, request.rule_id)
            except StorageUnavailable as error:
                await abort_storage_unavailable(context, error, self._log)
        if not deleted:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such alert rule in this auction")
        logger.info("Alert rule deleted", extra={"auction_id": auction_id, "rule_id": request.rule_id})
        return alerts_pb2.DeleteAlertRuleResponse()

    async def _queue(self, delivery: AlertDelivery, context: grpc.aio.ServicerContext) -> AlertDelivery:
        try:
            queued = await self._store.enqueue_delivery(delivery)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        self._wake_sender()
        return queued

    async def SendTestAlertDelivery(
        self, request: alerts_pb2.SendTestAlertDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.SendTestAlertDeliveryResponse:
        auction_id = await self._auction(request.auction_id, context)
        rule = await self._rule(auction_id, request.rule_id, context)
        delivery = new_delivery(rule, EVENT_TEST, self._clock(), {"test": True})
        return alerts_pb2.SendTestAlertDeliveryResponse(
            delivery=delivery_to_wire(await self._queue(delivery, context))
        )

    async def ListAlertDeliveries(
        self, request: alerts_pb2.ListAlertDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListAlertDeliveriesResponse:
        auction_id = await self._auction(request.auction_id, context)
        if not 0 <= request.page_size <= MAX_DELIVERY_PAGE:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size: 0 to {MAX_DELIVERY_PAGE}")
        size = request.page_size or DEFAULT_DELIVERY_PAGE
        before = None
        if request.page_token:
            before = _position(request.page_token)
            if before is None:
                await abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this service gave"
                )
        try:
            found = await self._store.list_deliveries(auction_id, request.rule_id or None, size + 1, before)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        page = found[:size]
        return alerts_pb2.ListAlertDeliveriesResponse(
            deliveries=[delivery_to_wire(each) for each in page],
            next_page_token=_page_token(page[-1].created_at, page[-1].delivery_id)
            if len(found) > size
            else "",
        )

    async def ListActiveAlertRules(
        self, request: alerts_pb2.ListActiveAlertRulesRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListActiveAlertRulesResponse:
        if not 0 <= request.page_size <= MAX_RULE_PAGE:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size: 0 to {MAX_RULE_PAGE}")
        size = request.page_size or DEFAULT_RULE_PAGE
        # Taken before anything is read: a change after it is listed by the next listing of changes.
        cursor = _changes_cursor(self._clock())
        if request.changes_since:
            return await self._list_changes(request, size, cursor, context)
        try:
            found = await self._store.list_active_rules(request.page_token, size + 1)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        page = found[:size]
        return alerts_pb2.ListActiveAlertRulesResponse(
            rules=[rule_to_wire(rule) for rule in page],
            next_page_token=page[-1].rule_id if len(found) > size else "",
            changes_cursor=cursor,
        )

    async def _list_changes(
        self,
        request: alerts_pb2.ListActiveAlertRulesRequest,
        size: int,
        cursor: str,
        context: grpc.aio.ServicerContext,
    ) -> alerts_pb2.ListActiveAlertRulesResponse:
        since = _moment_of_cursor(request.changes_since)
        if since is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "changes_since: not a changes_cursor")
        if since < self._clock() - DELETED_RULES_KEPT_SECONDS:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "changes_since: older than the deletions kept; list every rule instead",
            )
        after = None
        if request.page_token:
            after = _position(request.page_token)
            if after is None:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_token: not one of this listing")
        # A change is stamped with the moment its writer read the clock, a little before it commits;
        # the margin lists again what committed late (a rule listed twice is the same rule).
        floor = since - CHANGES_MARGIN_SECONDS
        try:
            found = await self._store.list_rule_changes(floor, after, size + 1)
            deleted = await self._store.list_deleted_rules(floor) if after is None else []
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        page = found[:size]
        return alerts_pb2.ListActiveAlertRulesResponse(
            rules=[rule_to_wire(rule) for rule in page if not rule.spec.paused],
            removed_rule_ids=[*deleted, *(rule.rule_id for rule in page if rule.spec.paused)],
            next_page_token=_page_token(page[-1].updated_at, page[-1].rule_id) if len(found) > size else "",
            changes_cursor=cursor,
        )

    async def RecordAlertFiring(
        self, request: alerts_pb2.RecordAlertFiringRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.RecordAlertFiringResponse:
        auction_id = await self._auction(request.auction_id, context)
        if not _FIRING_ID.fullmatch(request.firing_id):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "firing_id: 8 to 64 of A-Z a-z 0-9 _ -")
        rule = await self._rule(auction_id, request.rule_id, context)
        if rule.spec.paused:
            await abort(context, grpc.StatusCode.NOT_FOUND, "the alert rule is paused")
        delivery_id = f"msg_{request.firing_id}"
        fired_at = _seconds(request.fired_at) if request.HasField("fired_at") else self._clock()
        try:
            # A retried call: the delivery it queued the first time.
            existing = await self._store.get_delivery(delivery_id)
            if existing is not None:
                return alerts_pb2.RecordAlertFiringResponse(delivery=delivery_to_wire(existing))
            recorded = await self._store.record_firing(
                auction_id,
                rule.rule_id,
                fired_at,
                rule.spec.cooldown_seconds,
                firing_id=request.firing_id,
                require_armed=request.require_armed,
            )
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        if not recorded:
            # Another evaluator (a hand-over, a restart) reported this rule within its cooldown, or
            # (require_armed) reported this crossing already.
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "within the rule's cooldown, or the rule is not armed (fired already)",
            )
        delivery = new_delivery(
            rule,
            EVENT_FIRED,
            fired_at,
            {"value": request.value, "referenceValue": request.reference_value},
            delivery_id=delivery_id,
        )
        queued = await self._queue(delivery, context)
        logger.info(
            "Alert fired",
            extra={"auction_id": auction_id, "rule_id": rule.rule_id, "delivery_id": queued.delivery_id},
        )
        return alerts_pb2.RecordAlertFiringResponse(delivery=delivery_to_wire(queued))

    async def RecordAlertArmed(
        self, request: alerts_pb2.RecordAlertArmedRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.RecordAlertArmedResponse:
        if len(request.reports) > MAX_ARMED_REPORTS:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"reports: at most {MAX_ARMED_REPORTS}")
        reports = []
        for report in request.reports:
            auction_id = await self._auction(report.auction_id, context)
            if not _RULE_ID.fullmatch(report.rule_id) or not report.HasField("rule_updated_at"):
                await abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, "reports: a rule_id and its rule_updated_at"
                )
            reports.append(
                ArmedReport(auction_id, report.rule_id, report.armed, _seconds(report.rule_updated_at))
            )
        try:
            recorded = await self._store.record_armed(reports)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        return alerts_pb2.RecordAlertArmedResponse(recorded=recorded)
