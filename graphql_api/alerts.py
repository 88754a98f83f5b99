"""The ingest service's alert rules and deliveries as this API sees them (``AlertRuleService``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2
from viewer_analytics.v1 import alert_rule_service_pb2_grpc as alerts_grpc

from graphql_api.ingest import IngestClient

KINDS = {
    "ABOVE": alerts_pb2.ALERT_KIND_ABOVE,
    "BELOW": alerts_pb2.ALERT_KIND_BELOW,
    "DROP_PERCENT": alerts_pb2.ALERT_KIND_DROP_PERCENT,
    "ZERO_WHILE_LIVE": alerts_pb2.ALERT_KIND_ZERO_WHILE_LIVE,
}
METRICS = {
    "CONNECTIONS": alerts_pb2.ALERT_METRIC_CONNECTIONS,
    "UNIQUE_VIEWERS": alerts_pb2.ALERT_METRIC_UNIQUE_VIEWERS,
}
STATUSES = {
    alerts_pb2.ALERT_DELIVERY_STATUS_PENDING: "PENDING",
    alerts_pb2.ALERT_DELIVERY_STATUS_DELIVERED: "DELIVERED",
    alerts_pb2.ALERT_DELIVERY_STATUS_FAILED: "FAILED",
}
_KIND_NAMES = {wire: name for name, wire in KINDS.items()}
_METRIC_NAMES = {wire: name for name, wire in METRICS.items()}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    kind: str
    metric: str
    threshold: int
    window_seconds: int
    hysteresis: int
    cooldown_seconds: int
    webhook_url: str
    paused: bool

    def to_wire(self) -> alerts_pb2.AlertRuleSpec:
        return alerts_pb2.AlertRuleSpec(
            kind=KINDS[self.kind],
            metric=METRICS[self.metric],
            threshold=self.threshold,
            window_seconds=self.window_seconds,
            hysteresis=self.hysteresis,
            cooldown_seconds=self.cooldown_seconds,
            webhook_url=self.webhook_url,
            paused=self.paused,
        )


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    auction_id: str
    spec: RuleSpec
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    rule_id: str
    auction_id: str
    event_type: str
    status: str
    attempts: int
    last_error: str
    last_status_code: int
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    payload: str


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_cursor: str | None


def _at(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)


def _rule(message: alerts_pb2.AlertRule) -> Rule:
    spec = message.spec
    return Rule(
        rule_id=message.rule_id,
        auction_id=message.auction_id,
        spec=RuleSpec(
            kind=_KIND_NAMES[spec.kind],
            metric=_METRIC_NAMES[spec.metric],
            threshold=spec.threshold,
            window_seconds=spec.window_seconds,
            hysteresis=spec.hysteresis,
            cooldown_seconds=spec.cooldown_seconds,
            webhook_url=spec.webhook_url,
            paused=spec.paused,
        ),
        created_at=_at(message.created_at),
        updated_at=_at(message.updated_at),
    )


def _delivery(message: alerts_pb2.AlertDelivery) -> Delivery:
    return Delivery(
        delivery_id=message.delivery_id,
        rule_id=message.rule_id,
        auction_id=message.auction_id,
        event_type=message.event_type,
        status=STATUSES.get(message.status, "PENDING"),
        attempts=message.attempts,
        last_error=message.last_error,
        last_status_code=message.last_status_code,
        created_at=_at(message.created_at),
        last_attempt_at=_at(message.last_attempt_at) if message.HasField("last_attempt_at") else None,
        next_attempt_at=_at(message.next_attempt_at) if message.HasField("next_attempt_at") else None,
        delivered_at=_at(message.delivered_at) if message.HasField("delivered_at") else None,
        payload=message.payload,
    )


class AlertRules:
    """Calls ``AlertRuleService`` through the API's ingest client (its key, deadline, metrics, logs).

    Every method raises what :meth:`IngestClient.call` raises: ``IngestRejected`` (with the ingest
    service's reason, which starts with the field's wire name), ``IngestNotFound``,
    ``IngestUnavailable``.
    """

    def __init__(self, ingest: IngestClient) -> None:
        self._ingest = ingest
        self._stub = alerts_grpc.AlertRuleServiceStub(ingest.channel)

    async def create(self, auction_id: str, spec: RuleSpec) -> tuple[Rule, str]:
        response = await self._ingest.call(
            "CreateAlertRule",
            self._stub.CreateAlertRule,
            alerts_pb2.CreateAlertRuleRequest(auction_id=auction_id, spec=spec.to_wire()),
        )
        return _rule(response.rule), response.secret

    async def list(self, auction_id: str) -> list[Rule]:
        response = await self._ingest.call(
            "ListAlertRules",
            self._stub.ListAlertRules,
            alerts_pb2.ListAlertRulesRequest(auction_id=auction_id),
        )
        return [_rule(each) for each in response.rules]

    async def update(self, auction_id: str, rule_id: str, spec: RuleSpec) -> Rule:
        response = await self._ingest.call(
            "UpdateAlertRule",
            self._stub.UpdateAlertRule,
            alerts_pb2.UpdateAlertRuleRequest(auction_id=auction_id, rule_id=rule_id, spec=spec.to_wire()),
        )
        return _rule(response.rule)

    async def set_paused(self, auction_id: str, rule_id: str, paused: bool) -> Rule:
        response = await self._ingest.call(
            "SetAlertRulePaused",
            self._stub.SetAlertRulePaused,
            alerts_pb2.SetAlertRulePausedRequest(auction_id=auction_id, rule_id=rule_id, paused=paused),
        )
        return _rule(response.rule)

    async def delete(self, auction_id: str, rule_id: str) -> None:
        await self._ingest.call(
            "DeleteAlertRule",
            self._stub.DeleteAlertRule,
            alerts_pb2.DeleteAlertRuleRequest(auction_id=auction_id, rule_id=rule_id),
        )

    async def send_test(self, auction_id: str, rule_id: str) -> Delivery:
        response = await self._ingest.call(
            "SendTestAlertDelivery",
            self._stub.SendTestAlertDelivery,
            alerts_pb2.SendTestAlertDeliveryRequest(auction_id=auction_id, rule_id=rule_id),
        )
        return _delivery(response.delivery)

    async def deliveries(
        self, auction_id: str, rule_id: str | None, first: int, after: str | None
    ) -> DeliveryPage:
        response = await self._ingest.call(
            "ListAlertDeliveries",
            self._stub.ListAlertDeliveries,
            alerts_pb2.ListAlertDeliveriesRequest(
                auction_id=auction_id, rule_id=rule_id or "", page_size=first, page_token=after or ""
            ),
        )
        return DeliveryPage(
            [_delivery(each) for each in response.deliveries], response.next_page_token or None
        )
