"""``Query.alertRules`` and ``Query.alertDeliveries``: an auction's rules and delivery log."""

from __future__ import annotations

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension
from strawberry.types import Info

from graphql_api.alerts import AlertRules
from graphql_api.context import Context
from graphql_api.errors import AnalyticsUnavailable, AuctionNotAuthorized, BadUserInput
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.permissions import IsAuthenticated
from graphql_api.types.alerts import AlertDelivery as AlertDeliveryType
from graphql_api.types.alerts import AlertDeliveryPage, AlertRule
from service_common.auction_ids import auction_id_problem

MAX_DELIVERIES_PAGE = 200


def _rules(info: Info[Context, None], auction_id: strawberry.ID) -> AlertRules:
    principal = info.context.principal
    # IsAuthenticated has run: a principal is present.
    assert principal is not None
    if not principal.may_access(str(auction_id)):
        raise AuctionNotAuthorized("not authorized for this auction")
    problem = auction_id_problem(str(auction_id))
    if problem:
        raise BadUserInput(problem)
    return AlertRules(info.context.ingest)


async def resolve_alert_rules(info: Info[Context, None], auction_id: strawberry.ID) -> list[AlertRule]:
    rules = _rules(info, auction_id)
    try:
        return [AlertRule.from_domain(rule) for rule in await rules.list(str(auction_id))]
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None


async def resolve_alert_deliveries(
    info: Info[Context, None],
    auction_id: strawberry.ID,
    rule_id: strawberry.ID | None = None,
    first: int = 50,
    after: str | None = None,
) -> AlertDeliveryPage:
    rules = _rules(info, auction_id)
    if not 1 <= first <= MAX_DELIVERIES_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_DELIVERIES_PAGE}")
    try:
        page = await rules.deliveries(str(auction_id), str(rule_id) if rule_id else None, first, after)
    except IngestRejected:
        raise BadUserInput("after is not a cursor this API gave") from None
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    return AlertDeliveryPage(
        deliveries=[AlertDeliveryType.from_domain(each) for each in page.deliveries],
        next_cursor=page.next_cursor,
    )


def _authenticated() -> list[FieldExtension]:
    return [PermissionExtension(permissions=[IsAuthenticated()])]


@strawberry.type
class AlertQueries:
    alert_rules: list[AlertRule] = strawberry.field(
        resolver=resolve_alert_rules,
        description="The alert rules of an auction the token covers (admins: any), oldest first. Their "
        "secrets are never listed.",
        extensions=_authenticated(),
    )
    alert_deliveries: AlertDeliveryPage = strawberry.field(
        resolver=resolve_alert_deliveries,
        description="The auction's webhook deliveries (of one rule with `ruleId`), newest first: status, "
        "attempts, last error. `first` up to 200, `after` the previous page's `nextCursor`.",
        extensions=_authenticated(),
    )
