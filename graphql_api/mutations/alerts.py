"""Alert rule mutations: create, update, pause, delete, and send a test delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension
from strawberry.types import Info

from graphql_api.alerts import AlertRules
from graphql_api.context import Context
from graphql_api.errors import AnalyticsUnavailable
from graphql_api.ingest import IngestNotFound, IngestRejected, IngestUnavailable
from graphql_api.permissions import IsAuthenticated
from graphql_api.types.alerts import (
    AlertDelivery,
    AlertRule,
    AlertRuleCreated,
    AlertRuleDeleted,
    AlertRuleInput,
    AlertRuleNotFound,
)
from graphql_api.types.results import InvalidInput, NotAuthorized
from service_common.auction_ids import auction_id_problem

T = TypeVar("T")

CreateAlertRuleResult = Annotated[
    AlertRuleCreated | NotAuthorized | InvalidInput,
    strawberry.union("CreateAlertRuleResult", description="The new rule and its secret, or why not."),
]
AlertRuleResult = Annotated[
    AlertRule | NotAuthorized | InvalidInput | AlertRuleNotFound,
    strawberry.union("AlertRuleResult", description="The rule as changed, or why it was not."),
]
DeleteAlertRuleResult = Annotated[
    AlertRuleDeleted | NotAuthorized | InvalidInput | AlertRuleNotFound,
    strawberry.union("DeleteAlertRuleResult", description="The rule was deleted, or why not."),
]
TestAlertDeliveryResult = Annotated[
    AlertDelivery | NotAuthorized | InvalidInput | AlertRuleNotFound,
    strawberry.union("TestAlertDeliveryResult", description="The queued test delivery, or why none."),
]

# The ingest service's refusals start with the wire name of the field at fault.
_INPUT_FIELDS = {
    "kind": "rule.kind",
    "metric": "rule.metric",
    "threshold": "rule.threshold",
    "window_seconds": "rule.windowSeconds",
    "hysteresis": "rule.hysteresis",
    "cooldown_seconds": "rule.cooldownSeconds",
    "webhook_url": "rule.webhookUrl",
}


def _invalid(detail: str) -> InvalidInput:
    field, _, message = detail.partition(": ")
    return InvalidInput(message=message or detail, field=_INPUT_FIELDS.get(field, "auctionId"))


async def _scoped(
    info: Info[Context, None],
    auction_id: strawberry.ID,
    rule_id: str | None,
    call: Callable[[AlertRules], Awaitable[T]],
) -> T | NotAuthorized | InvalidInput | AlertRuleNotFound:
    """Runs ``call`` once the token covers the auction (the settings mutation's rule) and its id is one."""
    principal = info.context.principal
    # IsAuthenticated has run: a principal is present.
    assert principal is not None
    if not principal.may_access(str(auction_id)):
        return NotAuthorized(message="not authorized for this auction", auction_id=auction_id)
    problem = auction_id_problem(str(auction_id))
    if problem:
        return InvalidInput(message=problem, field="auctionId")
    try:
        return await call(AlertRules(info.context.ingest))
    except IngestRejected as rejected:
        return _invalid(rejected.detail)
    except IngestNotFound as missing:
        return AlertRuleNotFound(message=missing.detail, rule_id=strawberry.ID(rule_id or ""))
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None


async def resolve_create(
    info: Info[Context, None], auction_id: strawberry.ID, rule: AlertRuleInput
) -> CreateAlertRuleResult:
    async def create(rules: AlertRules) -> AlertRuleCreated:
        created, secret = await rules.create(str(auction_id), rule.to_spec())
        return AlertRuleCreated(rule=AlertRule.from_domain(created), secret=secret)

    result = await _scoped(info, auction_id, None, create)
    assert not isinstance(result, AlertRuleNotFound), "creation names no existing rule"
    return result


async def resolve_update(
    info: Info[Context, None], auction_id: strawberry.ID, rule_id: strawberry.ID, rule: AlertRuleInput
) -> AlertRuleResult:
    async def update(rules: AlertRules) -> AlertRule:
        return AlertRule.from_domain(await rules.update(str(auction_id), str(rule_id), rule.to_spec()))

    return await _scoped(info, auction_id, str(rule_id), update)


async def resolve_set_paused(
    info: Info[Context, None], auction_id: strawberry.ID, rule_id: strawberry.ID, paused: bool
) -> AlertRuleResult:
    async def set_paused(rules: AlertRules) -> AlertRule:
        return AlertRule.from_domain(await rules.set_paused(str(auction_id), str(rule_id), paused))

    return await _scoped(info, auction_id, str(rule_id), set_paused)


async def resolve_delete(
    info: Info[Context, None], auction_id: strawberry.ID, rule_id: strawberry.ID
) -> DeleteAlertRuleResult:
    async def delete(rules: AlertRules) -> AlertRuleDeleted:
        await rules.delete(str(auction_id), str(rule_id))
        return AlertRuleDeleted(rule_id=rule_id, auction_id=auction_id)

    return await _scoped(info, auction_id, str(rule_id), delete)


async def resolve_send_test(
    info: Info[Context, None], auction_id: strawberry.ID, rule_id: strawberry.ID
) -> TestAlertDeliveryResult:
    async def send(rules: AlertRules) -> AlertDelivery:
        return AlertDelivery.from_domain(await rules.send_test(str(auction_id), str(rule_id)))

    return await _scoped(info, auction_id, str(rule_id), send)


def _authenticated() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[IsAuthenticated()])]


@strawberry.type
class AlertMutations:
    create_alert_rule: CreateAlertRuleResult = strawberry.mutation(
        resolver=resolve_create,
        description="Creates an alert rule on an auction the token covers (admins: any). The result "
        "carries the rule's signing secret, shown only here.",
        extensions=_authenticated(),
    )
    update_alert_rule: AlertRuleResult = strawberry.mutation(
        resolver=resolve_update,
        description="Replaces an alert rule's settings (its id and secret stay).",
        extensions=_authenticated(),
    )
    set_alert_rule_paused: AlertRuleResult = strawberry.mutation(
        resolver=resolve_set_paused,
        description="Pauses (true) or resumes (false) an alert rule: a paused rule never fires.",
        extensions=_authenticated(),
    )
    delete_alert_rule: DeleteAlertRuleResult = strawberry.mutation(
        resolver=resolve_delete,
        description="Deletes an alert rule; its deliveries stay in the log, pending ones are still sent.",
        extensions=_authenticated(),
    )
    send_test_alert_delivery: TestAlertDeliveryResult = strawberry.mutation(
        resolver=resolve_send_test,
        description="Queues an `alert.test` delivery of the rule, signed and retried like a real one.",
        extensions=_authenticated(),
    )
