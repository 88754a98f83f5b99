"""Alert rules and webhook deliveries: the domain types and their validation, free of gRPC and storage."""

from __future__ import annotations

import base64
import enum
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime

# Standard Webhooks' secret form: "whsec_" and the base64 of the key (24 random bytes here, 192 bits;
# the specification asks for 24 to 64).
SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 24
MAX_URL_LENGTH = 2048
MAX_COOLDOWN_SECONDS = 7 * 86_400
MAX_WINDOW_SECONDS = 86_400
MAX_THRESHOLD = 100_000_000
# Rules one auction may hold: bounds the evaluator's work per count change and the list's size.
MAX_RULES_PER_AUCTION = 50


class AlertKind(enum.Enum):
    """What a rule watches for."""

    ABOVE = "above"
    BELOW = "below"
    DROP_PERCENT = "drop_percent"
    ZERO_WHILE_LIVE = "zero_while_live"


class AlertMetric(enum.Enum):
    """Which live count a rule reads."""

    CONNECTIONS = "connections"
    UNIQUE_VIEWERS = "unique_viewers"


class DeliveryStatus(enum.Enum):
    """Where a delivery stands: waiting for an (other) attempt, received by the endpoint, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AlertRuleInvalid(ValueError):
    """A rule's fields are refused; ``field`` names the one at fault (its wire name)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class AlertRuleNotFound(LookupError):
    """No rule with that id in that auction."""


class TooManyAlertRules(ValueError):
    """The auction already holds :data:`MAX_RULES_PER_AUCTION` rules."""


@dataclass(frozen=True, slots=True)
class AlertRuleSpec:
    """What a seller sets on a rule.

    ``threshold`` is the count for ABOVE and BELOW, the percentage for DROP_PERCENT (1-100) and unused
    for ZERO_WHILE_LIVE. ``window_seconds`` is DROP_PERCENT's window and ZERO_WHILE_LIVE's duration.
    ``hysteresis`` is how far the count must come back past the threshold (counts; percentage points
    for DROP_PERCENT) before the rule can fire again; ``cooldown_seconds`` the least time between two
    firings of the rule whatever the count does.
    """

    kind: AlertKind
    metric: AlertMetric
    threshold: int
    window_seconds: int
    hysteresis: int
    cooldown_seconds: int
    webhook_url: str
    paused: bool = False

    def problem(self) -> AlertRuleInvalid | None:
        """Why the spec is refused (not counting the URL's target, which the target policy checks)."""
        if not self.webhook_url or len(self.webhook_url) > MAX_URL_LENGTH:
            return AlertRuleInvalid("webhook_url", f"must be 1 to {MAX_URL_LENGTH} characters")
        if not 0 <= self.cooldown_seconds <= MAX_COOLDOWN_SECONDS:
            return AlertRuleInvalid("cooldown_seconds", f"must be between 0 and {MAX_COOLDOWN_SECONDS}")
        if not 0 <= self.hysteresis <= MAX_THRESHOLD:
            return AlertRuleInvalid("hysteresis", f"must be between 0 and {MAX_THRESHOLD}")
        if self.kind in (AlertKind.ABOVE, AlertKind.BELOW) and not 0 <= self.threshold <= MAX_THRESHOLD:
            return AlertRuleInvalid("threshold", f"must be between 0 and {MAX_THRESHOLD}")
        if self.kind is AlertKind.BELOW and self.threshold == 0:
            return AlertRuleInvalid("threshold", "a count is never below 0: use ZERO_WHILE_LIVE")
        if self.kind is AlertKind.DROP_PERCENT:
            if not 1 <= self.threshold <= 100:
                return AlertRuleInvalid("threshold", "a drop is a percentage between 1 and 100")
            if self.hysteresis > 100:
                return AlertRuleInvalid("hysteresis", "percentage points between 0 and 100")
        if self.kind in (AlertKind.DROP_PERCENT, AlertKind.ZERO_WHILE_LIVE) and not (
            1 <= self.window_seconds <= MAX_WINDOW_SECONDS
        ):
            return AlertRuleInvalid("window_seconds", f"must be between 1 and {MAX_WINDOW_SECONDS}")
        return None


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A stored rule. ``secret`` signs its deliveries; it is shown to the seller once, at creation."""

    rule_id: str
    auction_id: str
    spec: AlertRuleSpec
    secret: str
    created_at: float
    updated_at: float
    # The evaluation state its evaluators last recorded for this spec: armed (True), fired and not
    # armed again (False), or never evaluated (None). Read back by an evaluator that starts, so that a
    # restart neither reports a crossing twice nor misses one made while it was down.
    armed: bool | None = None

    def with_spec(self, spec: AlertRuleSpec, now: float) -> AlertRule:
        """The rule with a new spec: its evaluation state starts again (a new threshold, a new state)."""
        return replace(self, spec=spec, updated_at=now, armed=None)


def new_rule_id() -> str:
    return "rule_" + secrets.token_hex(12)


def new_secret() -> str:
    """A fresh signing secret in Standard Webhooks' form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """One message to a rule's endpoint, and how its attempts went.

    ``delivery_id`` is the ``webhook-id`` of every attempt, so that the receiver can de-duplicate.
    ``payload`` is the JSON body, fixed when the delivery is created (so a retry sends the same bytes,
    and a rule's later changes do not rewrite what it reported). ``webhook_url`` and ``secret`` are the
    rule's at that moment too, so a delivery stays deliverable after its rule is deleted.
    """

    delivery_id: str
    rule_id: str
    auction_id: str
    event_type: str
    payload: str
    webhook_url: str
    secret: str
    created_at: float
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: float = 0.0
    last_attempt_at: float | None = None
    delivered_at: float | None = None
    last_status_code: int = 0


EVENT_FIRED = "alert.fired"
EVENT_TEST = "alert.test"


def delivery_payload(event_type: str, rule: AlertRule, at: float, details: dict[str, object]) -> str:
    """The JSON body of a delivery: Standard Webhooks' ``type`` / ``timestamp`` / ``data`` envelope."""
    data: dict[str, object] = {
        "ruleId": rule.rule_id,
        "auctionId": rule.auction_id,
        "kind": rule.spec.kind.name,
        "metric": rule.spec.metric.name,
        "threshold": rule.spec.threshold,
        "windowSeconds": rule.spec.window_seconds,
        **details,
    }
    return json.dumps(
        {
            "type": event_type,
            "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def new_delivery(
    rule: AlertRule, event_type: str, at: float, details: dict[str, object], delivery_id: str | None = None
) -> AlertDelivery:
    """A pending delivery of ``event_type`` for ``rule``, due at once."""
    return AlertDelivery(
        delivery_id=delivery_id or "msg_" + secrets.token_hex(12),
        rule_id=rule.rule_id,
        auction_id=rule.auction_id,
        event_type=event_type,
        payload=delivery_payload(event_type, rule, at, details),
        webhook_url=rule.spec.webhook_url,
        secret=rule.secret,
        created_at=at,
        next_attempt_at=at,
    )
