"""The AlertStore contract: rules per auction and the delivery queue, every store alike."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from ingest_service.alerts.domain import (
    EVENT_FIRED,
    EVENT_TEST,
    MAX_RULES_PER_AUCTION,
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
from ingest_service.alerts.mongo_store import MongoAlertStore
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.alerts.store import AlertStore, ArmedReport
from ingest_service.storage.mongo_store import MongoSnapshotStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from tests.contract.conftest import RETENTION_DAYS, Backend

SPEC = AlertRuleSpec(AlertKind.ABOVE, AlertMetric.CONNECTIONS, 500, 0, 50, 300, "https://hooks.example.com/a")


@pytest.fixture
async def alerts(backend: Backend) -> AsyncIterator[AlertStore]:
    store: AlertStore
    if isinstance(backend.store, SqliteSnapshotStore):
        store = await SqliteAlertStore.open(backend.store, retention_days=RETENTION_DAYS, clock=backend.clock)
    else:
        assert isinstance(backend.store, MongoSnapshotStore)
        store = await MongoAlertStore.open(backend.store, retention_days=RETENTION_DAYS, clock=backend.clock)
    yield store
    await store.close()


def rule(auction: str = "a-1", spec: AlertRuleSpec = SPEC, at: float = 1_000.0) -> AlertRule:
    return AlertRule(new_rule_id(), auction, spec, new_secret(), at, at)


async def test_rules_are_created_listed_updated_and_deleted_within_their_auction(alerts: AlertStore) -> None:
    first, second, other = rule(at=1.0), rule(at=2.0), rule("a-2")
    for each in (first, second, other):
        await alerts.create_rule(each)
    assert await alerts.list_rules("a-1") == [first, second]
    assert await alerts.get_rule("a-1", first.rule_id) == first
    # Another auction's id does not reach the rule.
    assert await alerts.get_rule("a-2", first.rule_id) is None

    paused = replace(SPEC, paused=True, threshold=700, webhook_url="https://hooks.example.com/b")
    updated = await alerts.update_rule("a-1", first.rule_id, paused, 50.0)
    assert (updated.spec, updated.updated_at, updated.created_at, updated.secret) == (
        paused,
        50.0,
        first.created_at,
        first.secret,
    )
    assert await alerts.get_rule("a-1", first.rule_id) == updated
    with pytest.raises(AlertRuleNotFound):
        await alerts.update_rule("a-2", first.rule_id, SPEC, 60.0)

    active = await alerts.list_active_rules("", 100)
    assert sorted(each.rule_id for each in active) == sorted([second.rule_id, other.rule_id])
    page = await alerts.list_active_rules("", 1)
    assert len(page) == 1
    assert [each.rule_id for each in await alerts.list_active_rules(page[0].rule_id, 10)] == [
        each.rule_id for each in sorted(active, key=lambda r: r.rule_id)[1:]
    ]

    assert not await alerts.delete_rule("a-2", first.rule_id)
    assert await alerts.delete_rule("a-1", first.rule_id)
    assert await alerts.get_rule("a-1", first.rule_id) is None
    assert not await alerts.delete_rule("a-1", first.rule_id)


async def test_an_auction_holds_a_bounded_number_of_rules(alerts: AlertStore) -> None:
    for _ in range(MAX_RULES_PER_AUCTION):
        await alerts.create_rule(rule("a-full"))
    with pytest.raises(TooManyAlertRules):
        await alerts.create_rule(rule("a-full"))
    await alerts.create_rule(rule("a-other"))


async def test_the_queue_claims_each_due_delivery_once_per_lease_and_fences_late_outcomes(
    alerts: AlertStore,
) -> None:
    owner = rule()
    now = time.time()
    early = new_delivery(owner, EVENT_FIRED, now - 5, {"value": 501})
    later = replace(new_delivery(owner, EVENT_TEST, now, {}), next_attempt_at=now + 100)
    for each in (early, later):
        assert await alerts.enqueue_delivery(each) == each
    # Queued again (a retried call), the first stays: same id, same body.
    assert await alerts.enqueue_delivery(replace(early, payload="{}")) == early

    (claimed,) = await alerts.claim_due_deliveries(now, 30.0, 10)
    assert (claimed.delivery_id, claimed.attempts, claimed.next_attempt_at) == (
        early.delivery_id,
        1,
        now + 30,
    )
    assert await alerts.claim_due_deliveries(now + 29, 30.0, 10) == []
    retry = replace(
        claimed, last_error="HTTP 503", next_attempt_at=now + 1, last_attempt_at=now, last_status_code=503
    )
    assert await alerts.finish_attempt(retry)
    (again,) = await alerts.claim_due_deliveries(now + 2, 30.0, 10)
    assert (again.attempts, again.last_error, again.last_status_code) == (2, "HTTP 503", 503)
    # The attempt number fences: the outcome of attempt 1, arriving late, records nothing.
    assert not await alerts.finish_attempt(replace(retry, status=DeliveryStatus.FAILED))
    done = replace(again, status=DeliveryStatus.DELIVERED, delivered_at=now + 3, last_error="")
    assert await alerts.finish_attempt(done)
    assert await alerts.claim_due_deliveries(now + 1_000, 30.0, 10) == [
        replace(later, attempts=1, next_attempt_at=now + 1_030)
    ]

    newest_first = await alerts.list_deliveries("a-1", None, 10)
    assert [each.delivery_id for each in newest_first] == [later.delivery_id, early.delivery_id]
    assert newest_first[1] == done
    assert newest_first[1].status is DeliveryStatus.DELIVERED
    page = await alerts.list_deliveries("a-1", None, 1)
    assert [each.delivery_id for each in page] == [later.delivery_id]
    rest = await alerts.list_deliveries("a-1", None, 10, before=(page[0].created_at, page[0].delivery_id))
    assert [each.delivery_id for each in rest] == [early.delivery_id]
    assert await alerts.list_deliveries("a-1", "rule_other", 10) == []
    assert await alerts.list_deliveries("a-2", None, 10) == []


async def test_the_rules_changed_since_a_moment_are_listed_with_the_deleted_ones(
    alerts: AlertStore, backend: Backend
) -> None:
    """Proves what an evaluator's listing of changes reads: the rules whose updated_at is at or after
    the moment (paused ones included, for the caller to remove), a page at a time in change order, and
    the ids of the rules deleted since."""
    old, kept, late = rule(at=100.0), rule(at=200.0), rule("a-2", at=300.0)
    for each in (old, kept, late):
        await alerts.create_rule(each)
    paused = await alerts.update_rule("a-1", old.rule_id, replace(SPEC, paused=True), 400.0)
    changed = [each.rule_id for each in await alerts.list_rule_changes(200.0, None, 10)]
    assert changed == [kept.rule_id, late.rule_id, old.rule_id]
    assert (await alerts.list_rule_changes(400.0, None, 10)) == [paused]
    first = await alerts.list_rule_changes(150.0, None, 2)
    rest = await alerts.list_rule_changes(150.0, (first[-1].updated_at, first[-1].rule_id), 2)
    assert [each.rule_id for each in [*first, *rest]] == changed
    assert await alerts.list_deleted_rules(0.0) == []

    deleted_at = backend.clock()
    assert await alerts.delete_rule("a-2", late.rule_id)
    assert await alerts.list_deleted_rules(deleted_at) == [late.rule_id]
    assert await alerts.list_deleted_rules(deleted_at + 1.0) == []
    assert late.rule_id not in {each.rule_id for each in await alerts.list_rule_changes(0.0, None, 10)}


async def armed_state(alerts: AlertStore, rule_id: str) -> bool | None:
    (found,) = [each for each in await alerts.list_active_rules("", 100) if each.rule_id == rule_id]
    return found.armed


async def test_a_rules_evaluation_state_is_kept_for_its_spec_and_a_firing_disarms_it(
    alerts: AlertStore,
) -> None:
    """Proves what a restarted evaluator reads back: never evaluated (None), armed, or fired; that a
    firing leaves the rule disarmed, refuses another that requires it armed (another evaluator's
    report of the same crossing) yet passes a retry of itself; and that a new spec starts afresh."""
    owner, other = rule(), rule()
    for each in (owner, other):
        await alerts.create_rule(each)
    assert await armed_state(alerts, owner.rule_id) is None
    reports = [
        ArmedReport("a-1", owner.rule_id, True, owner.updated_at),
        # Another auction's id, a spec of another moment, no such rule: skipped.
        ArmedReport("a-2", other.rule_id, True, other.updated_at),
        ArmedReport("a-1", other.rule_id, True, other.updated_at + 1.0),
        ArmedReport("a-1", new_rule_id(), True, 1_000.0),
    ]
    assert await alerts.record_armed(reports) == 1
    assert (await armed_state(alerts, owner.rule_id), await armed_state(alerts, other.rule_id)) == (
        True,
        None,
    )

    assert await alerts.record_firing(
        "a-1", owner.rule_id, 2_000.0, 0, firing_id="f-first", require_armed=True
    )
    assert await armed_state(alerts, owner.rule_id) is False
    # The same crossing reported by a second evaluator: refused although the cooldown is 0.
    assert not await alerts.record_firing(
        "a-1", owner.rule_id, 2_000.5, 0, firing_id="f-second", require_armed=True
    )
    # The first evaluator's retry (its answer lost): passes, changes nothing.
    assert await alerts.record_firing(
        "a-1", owner.rule_id, 2_000.0, 60, firing_id="f-first", require_armed=True
    )
    # Armed again (the count came back), the next crossing fires.
    assert await alerts.record_armed([ArmedReport("a-1", owner.rule_id, True, owner.updated_at)]) == 1
    assert await alerts.record_firing(
        "a-1", owner.rule_id, 2_010.0, 0, firing_id="f-third", require_armed=True
    )
    # A firing without require_armed (an evaluator of before this state) is held to the cooldown only.
    assert await alerts.record_firing("a-1", owner.rule_id, 2_020.0, 0, firing_id="f-old")

    # A new spec: the state starts again, and a report for the old spec is skipped.
    changed = await alerts.update_rule("a-1", owner.rule_id, replace(SPEC, threshold=900), 3_000.0)
    assert await armed_state(alerts, owner.rule_id) is None
    assert await alerts.record_armed([ArmedReport("a-1", owner.rule_id, False, owner.updated_at)]) == 0
    assert await alerts.record_armed([ArmedReport("a-1", owner.rule_id, False, changed.updated_at)]) == 1
    assert await armed_state(alerts, owner.rule_id) is False
    # Deleted: nothing left to report on.
    assert await alerts.delete_rule("a-1", owner.rule_id)
    assert await alerts.record_armed([ArmedReport("a-1", owner.rule_id, True, changed.updated_at)]) == 0


async def test_a_firing_is_recorded_only_outside_the_rules_cooldown(alerts: AlertStore) -> None:
    owner = rule()
    await alerts.create_rule(owner)
    assert await alerts.record_firing("a-1", owner.rule_id, 1_000.0, 60)
    # A second evaluator reporting the same crossing (or a restarted one) within the cooldown: refused.
    assert not await alerts.record_firing("a-1", owner.rule_id, 1_030.0, 60)
    assert await alerts.record_firing("a-1", owner.rule_id, 1_060.0, 60)
    assert not await alerts.record_firing("a-1", owner.rule_id, 1_060.0, 60)
    assert await alerts.record_firing("a-1", owner.rule_id, 1_060.0, 0)
    # Another auction's id, or no such rule: nothing recorded.
    assert not await alerts.record_firing("a-2", owner.rule_id, 5_000.0, 60)
    assert not await alerts.record_firing("a-1", new_rule_id(), 5_000.0, 60)
    delivery = new_delivery(owner, EVENT_FIRED, 1_000.0, {})
    assert await alerts.get_delivery(delivery.delivery_id) is None
    await alerts.enqueue_delivery(delivery)
    assert await alerts.get_delivery(delivery.delivery_id) == delivery
    # A rule deleted and its firings with it: a new rule of that id would start afresh.
    assert await alerts.delete_rule("a-1", owner.rule_id)
    assert not await alerts.record_firing("a-1", owner.rule_id, 1_070.0, 60)
