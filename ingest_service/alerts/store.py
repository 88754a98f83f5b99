"""The alert store port: rules per auction and the durable queue of their webhook deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ingest_service.alerts.domain import AlertDelivery, AlertRule, AlertRuleSpec

RULE_COLLECTION = "alertrules"
DELIVERY_COLLECTION = "alertdeliveries"
DELETED_RULE_COLLECTION = "alertruledeletions"
# How far a reported ``rule_updated_at`` may be from the stored one and still name the same spec: the
# wire's timestamps are nanoseconds, the stores' epoch floats about a quarter of a microsecond apart.
UPDATED_AT_TOLERANCE_SECONDS = 1e-5
# How long a deleted rule's id is kept for the evaluators' listings of changes (theirs are seconds old).
DELETED_RULES_KEPT_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class ArmedReport:
    """An evaluator's report that a rule (as of its ``rule_updated_at``) is armed or not."""

    auction_id: str
    rule_id: str
    armed: bool
    rule_updated_at: float


class AlertStore(Protocol):
    """Stores rules and deliveries; the deliveries are the sender's durable queue.

    Every method raises :class:`ingest_service.domain.StorageUnavailable` when the database cannot be
    reached or written. Finished deliveries older than the snapshots' retention are removed.
    """

    async def create_rule(self, rule: AlertRule) -> None:
        """Stores a new rule.

        Raises:
            TooManyAlertRules: its auction already holds the most rules allowed.
        """
        ...

    async def get_rule(self, auction_id: str, rule_id: str) -> AlertRule | None:
        """The auction's rule of that id, or None (also when the rule belongs to another auction)."""
        ...

    async def list_rules(self, auction_id: str) -> list[AlertRule]:
        """The auction's rules, oldest first."""
        ...

    async def update_rule(self, auction_id: str, rule_id: str, spec: AlertRuleSpec, now: float) -> AlertRule:
        """Replaces the rule's spec (its id, secret and creation time stay).

        Raises:
            AlertRuleNotFound: the auction has no rule of that id.
        """
        ...

    async def delete_rule(self, auction_id: str, rule_id: str) -> bool:
        """Removes the rule (its deliveries stay, and pending ones are still sent); False if none."""
        ...

    async def list_active_rules(self, after_rule_id: str, limit: int) -> list[AlertRule]:
        """Rules not paused, of every auction, by rule id after ``after_rule_id`` (for the evaluator),
        each with its recorded evaluation state (``armed``)."""
        ...

    async def list_rule_changes(
        self, since: float, after: tuple[float, str] | None, limit: int
    ) -> list[AlertRule]:
        """Rules of every auction, paused ones included, changed (``updated_at``) at ``since`` or later,
        by ``(updated_at, rule_id)`` after ``after``, each with its recorded evaluation state."""
        ...

    async def list_deleted_rules(self, since: float) -> list[str]:
        """Ids of the rules deleted at ``since`` or later (kept :data:`DELETED_RULES_KEPT_SECONDS`)."""
        ...

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
        """Notes that the rule fired at ``fired_at`` and leaves it disarmed (``armed`` False), unless it
        last fired less than ``cooldown_seconds`` before, or ``require_armed`` and it is disarmed
        (atomic: of two evaluators reporting one crossing, only one passes). False: refused.

        The rule's cooldown held across evaluators, restarts and hand-overs, not only in one
        evaluator's memory. The same ``firing_id`` as the firing last recorded passes again (a retry
        of a call whose answer was lost), changing nothing.
        """
        ...

    async def record_armed(self, reports: list[ArmedReport]) -> int:
        """Records each rule's evaluation state, in order; a report for a rule that is gone, or whose
        spec changed since its ``rule_updated_at`` (which started its state again), is skipped.
        Returns how many were recorded."""
        ...

    async def get_delivery(self, delivery_id: str) -> AlertDelivery | None:
        """The delivery of that id, or None."""
        ...

    async def enqueue_delivery(self, delivery: AlertDelivery) -> AlertDelivery:
        """Queues a delivery; one with the same id already queued wins and is returned (idempotent)."""
        ...

    async def claim_due_deliveries(self, now: float, lease_seconds: float, limit: int) -> list[AlertDelivery]:
        """Takes up to ``limit`` pending deliveries due by ``now`` for one attempt each.

        Each claimed delivery counts the attempt (``attempts`` + 1) and is not due again for
        ``lease_seconds``: a sender that dies mid-attempt leaves it to be claimed again after that,
        by itself after a restart or by another replica. Returned with the attempt counted.
        """
        ...

    async def finish_attempt(self, delivery: AlertDelivery) -> bool:
        """Records how the claimed attempt ended (status, error, next attempt, times).

        Only if the delivery is still at that attempt (``attempts`` is the claim's fencing token): a
        sender whose lease ran out and whose delivery was claimed again records nothing. Returns
        whether it recorded.
        """
        ...

    async def list_deliveries(
        self, auction_id: str, rule_id: str | None, limit: int, before: tuple[float, str] | None = None
    ) -> list[AlertDelivery]:
        """The auction's deliveries (of one rule when ``rule_id``), newest first, after the cursor
        ``before`` (the ``(created_at, delivery_id)`` of the previous page's last)."""
        ...

    async def purge_expired(self) -> int:
        """Removes finished deliveries older than the retention period; returns how many."""
        ...

    async def close(self) -> None:
        """Stops the store's own background work (the connection is the snapshot store's)."""
        ...
