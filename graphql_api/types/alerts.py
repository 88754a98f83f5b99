"""Seller alert rules and their webhook deliveries."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from graphql_api import alerts


@strawberry.enum(description="What an alert rule watches for.")
class AlertKind(enum.Enum):
    ABOVE = "ABOVE"
    BELOW = "BELOW"
    DROP_PERCENT = "DROP_PERCENT"
    ZERO_WHILE_LIVE = "ZERO_WHILE_LIVE"


@strawberry.enum(description="Which live count an alert rule reads.")
class AlertMetric(enum.Enum):
    CONNECTIONS = strawberry.enum_value("CONNECTIONS", description="Open connections (viewerCount).")
    UNIQUE_VIEWERS = strawberry.enum_value("UNIQUE_VIEWERS", description="Distinct viewers (uniqueViewers).")


@strawberry.enum(description="Where a webhook delivery stands.")
class AlertDeliveryStatus(enum.Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@strawberry.input(description="What a seller sets on an alert rule.")
class AlertRuleInput:
    kind: AlertKind
    webhook_url: str = strawberry.field(
        description="https to a public address; the deliveries are Standard Webhooks signed with the "
        "rule's secret."
    )
    metric: AlertMetric = AlertMetric.CONNECTIONS
    threshold: int = strawberry.field(
        default=0, description="ABOVE / BELOW: a count; DROP_PERCENT: a percentage (1-100)."
    )
    window_seconds: int = strawberry.field(
        default=0, description="DROP_PERCENT's window, ZERO_WHILE_LIVE's duration (1 s to 1 day)."
    )
    hysteresis: int = strawberry.field(
        default=0,
        description="How far the count must come back past the threshold before the rule can fire again "
        "(percentage points for DROP_PERCENT).",
    )
    cooldown_seconds: int = strawberry.field(default=300, description="The least time between two firings.")
    paused: bool = False

    def to_spec(self) -> alerts.RuleSpec:
        return alerts.RuleSpec(
            kind=self.kind.value,
            metric=self.metric.name,
            threshold=self.threshold,
            window_seconds=self.window_seconds,
            hysteresis=self.hysteresis,
            cooldown_seconds=self.cooldown_seconds,
            webhook_url=self.webhook_url,
            paused=self.paused,
        )


@strawberry.type(description="An alert rule of an auction.")
class AlertRule:
    id: strawberry.ID
    auction_id: strawberry.ID
    kind: AlertKind
    metric: AlertMetric
    threshold: int
    window_seconds: int
    hysteresis: int
    cooldown_seconds: int
    webhook_url: str
    paused: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, rule: alerts.Rule) -> AlertRule:
        spec = rule.spec
        return cls(
            id=strawberry.ID(rule.rule_id),
            auction_id=strawberry.ID(rule.auction_id),
            kind=AlertKind(spec.kind),
            metric=AlertMetric[spec.metric],
            threshold=spec.threshold,
            window_seconds=spec.window_seconds,
            hysteresis=spec.hysteresis,
            cooldown_seconds=spec.cooldown_seconds,
            webhook_url=spec.webhook_url,
            paused=spec.paused,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


@strawberry.type(description="A new rule, with the secret that signs its deliveries: shown this once.")
class AlertRuleCreated:
    rule: AlertRule
    secret: str = strawberry.field(
        description="`whsec_…`: verify deliveries with it (a Standard Webhooks library). Not shown again."
    )


@strawberry.type(description="The rule was deleted; its deliveries stay in the log.")
class AlertRuleDeleted:
    rule_id: strawberry.ID
    auction_id: strawberry.ID


@strawberry.type(description="The auction has no alert rule of that id.")
class AlertRuleNotFound:
    message: str
    rule_id: strawberry.ID


@strawberry.type(description="One webhook message of a rule and how its attempts went.")
class AlertDelivery:
    id: strawberry.ID = strawberry.field(description="The `webhook-id` of every attempt.")
    rule_id: strawberry.ID
    auction_id: strawberry.ID
    event_type: str = strawberry.field(description="`alert.fired` or `alert.test`.")
    status: AlertDeliveryStatus
    attempts: int
    last_error: str
    last_status_code: int = strawberry.field(description="The last attempt's HTTP status; 0 for no answer.")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = strawberry.field(description="While pending: the next attempt.")
    delivered_at: datetime | None
    payload: str = strawberry.field(description="The JSON body every attempt sends.")

    @classmethod
    def from_domain(cls, delivery: alerts.Delivery) -> AlertDelivery:
        return cls(
            id=strawberry.ID(delivery.delivery_id),
            rule_id=strawberry.ID(delivery.rule_id),
            auction_id=strawberry.ID(delivery.auction_id),
            event_type=delivery.event_type,
            status=AlertDeliveryStatus(delivery.status),
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            last_status_code=delivery.last_status_code,
            created_at=delivery.created_at,
            last_attempt_at=delivery.last_attempt_at,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            payload=delivery.payload,
        )


@strawberry.type(description="A page of an auction's deliveries, newest first.")
class AlertDeliveryPage:
    deliveries: list[AlertDelivery]
    next_cursor: str | None = strawberry.field(description="Pass as `after` for the next page; null: last.")
