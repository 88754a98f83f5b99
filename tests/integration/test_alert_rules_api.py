"""Alert rules through ``AlertRuleService`` (real gRPC) and the GraphQL API (real HTTP) over it: the
internal key, seller scoping, the secret shown once, the target policy at creation, a test delivery
reaching a real HTTPS receiver that verifies it with ``standardwebhooks``, and the delivery log."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2

from tests.alert_support import AlertingIngest, TlsMaterial, WebhookReceiver, alerting_ingest
from tests.graphql_support import RunningGraphQL, admin_token, graphql_config, running_graphql, seller_token

RULE_FIELDS = "id auctionId kind metric threshold windowSeconds hysteresis cooldownSeconds webhookUrl paused"
CREATE = f"""
mutation Create($auction: ID!, $rule: AlertRuleInput!) {{
  createAlertRule(auctionId: $auction, rule: $rule) {{
    __typename
    ... on AlertRuleCreated {{ secret rule {{ {RULE_FIELDS} createdAt updatedAt }} }}
    ... on NotAuthorized {{ message auctionId }}
    ... on InvalidInput {{ message field }}
  }}
}}
"""
RESULT = f"""
    __typename
    ... on AlertRule {{ {RULE_FIELDS} }}
    ... on NotAuthorized {{ message }}
    ... on InvalidInput {{ message field }}
    ... on AlertRuleNotFound {{ message ruleId }}
"""
UPDATE = f"""
mutation Update($auction: ID!, $id: ID!, $rule: AlertRuleInput!) {{
  updateAlertRule(auctionId: $auction, ruleId: $id, rule: $rule) {{ {RESULT} }}
}}
"""
PAUSE = f"""
mutation Pause($auction: ID!, $id: ID!, $paused: Boolean!) {{
  setAlertRulePaused(auctionId: $auction, ruleId: $id, paused: $paused) {{ {RESULT} }}
}}
"""
DELETE = """
mutation Delete($auction: ID!, $id: ID!) {
  deleteAlertRule(auctionId: $auction, ruleId: $id) {
    __typename
    ... on AlertRuleDeleted { ruleId auctionId }
    ... on AlertRuleNotFound { ruleId }
    ... on NotAuthorized { message }
  }
}
"""
SEND_TEST = """
mutation Test($auction: ID!, $id: ID!) {
  sendTestAlertDelivery(auctionId: $auction, ruleId: $id) {
    __typename
    ... on AlertDelivery { id ruleId eventType status attempts }
    ... on AlertRuleNotFound { ruleId }
    ... on NotAuthorized { message }
  }
}
"""
RULES = f"query Rules($auction: ID!) {{ alertRules(auctionId: $auction) {{ {RULE_FIELDS} }} }}"
DELIVERIES = """
query Deliveries($auction: ID!, $rule: ID, $first: Int! = 50, $after: String) {
  alertDeliveries(auctionId: $auction, ruleId: $rule, first: $first, after: $after) {
    deliveries {
      id ruleId eventType status attempts lastError lastStatusCode lastAttemptAt deliveredAt payload
    }
    nextCursor
  }
}
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial.make(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
async def receiver(tls: TlsMaterial) -> AsyncIterator[WebhookReceiver]:
    running = WebhookReceiver(tls)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def ingest(tmp_path: Path, tls: TlsMaterial) -> AsyncIterator[AlertingIngest]:
    async with alerting_ingest(tmp_path, tls) as running:
        yield running


@pytest.fixture
async def api(ingest: AlertingIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target)) as running:
        yield running


def rule_input(url: str, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "ABOVE",
        "metric": "CONNECTIONS",
        "threshold": 500,
        "hysteresis": 50,
        "webhookUrl": url,
        **changes,
    }


def spec(url: str) -> alerts_pb2.AlertRuleSpec:
    return alerts_pb2.AlertRuleSpec(
        kind=alerts_pb2.ALERT_KIND_ABOVE,
        metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
        threshold=500,
        hysteresis=50,
        cooldown_seconds=60,
        webhook_url=url,
    )


async def test_the_service_needs_the_internal_key(ingest: AlertingIngest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.stub().ListAlertRules(alerts_pb2.ListAlertRulesRequest(auction_id="a-1"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_rules_over_grpc_are_scoped_by_auction_and_checked_against_the_target_policy(
    ingest: AlertingIngest, receiver: WebhookReceiver
) -> None:
    stub, metadata = ingest.stub(), ingest.metadata
    created = await stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(auction_id="a-1", spec=spec(receiver.url)), metadata=metadata
    )
    assert created.secret.startswith("whsec_")
    rule_id = created.rule.rule_id
    listed = await stub.ListAlertRules(alerts_pb2.ListAlertRulesRequest(auction_id="a-1"), metadata=metadata)
    assert [each.rule_id for each in listed.rules] == [rule_id]
    # The secret is a field of the creation's response only: no rule message has one.
    assert "secret" not in alerts_pb2.AlertRule.DESCRIPTOR.fields_by_name

    for call, request in [
        (
            stub.UpdateAlertRule,
            alerts_pb2.UpdateAlertRuleRequest(auction_id="a-2", rule_id=rule_id, spec=spec(receiver.url)),
        ),
        (
            stub.SetAlertRulePaused,
            alerts_pb2.SetAlertRulePausedRequest(auction_id="a-2", rule_id=rule_id, paused=True),
        ),
        (stub.DeleteAlertRule, alerts_pb2.DeleteAlertRuleRequest(auction_id="a-2", rule_id=rule_id)),
        (
            stub.SendTestAlertDelivery,
            alerts_pb2.SendTestAlertDeliveryRequest(auction_id="a-2", rule_id=rule_id),
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await call(request, metadata=metadata)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    for url, problem in [
        ("http://127.0.0.1:1/hook", "webhook_url: webhook URLs must use https"),
        ("https://10.0.0.1/hook", "webhook_url: 10.0.0.1 is not a public address (private)"),
        ("https://169.254.169.254/", "webhook_url: 169.254.169.254 is not a public address (link-local)"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.CreateAlertRule(
                alerts_pb2.CreateAlertRuleRequest(auction_id="a-1", spec=spec(url)), metadata=metadata
            )
        assert (invalid.value.code(), invalid.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, problem)


async def test_a_firing_is_queued_once_per_firing_id_and_not_for_a_paused_rule(
    ingest: AlertingIngest, receiver: WebhookReceiver
) -> None:
    stub, metadata = ingest.stub(), ingest.metadata
    created = await stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(auction_id="a-1", spec=spec(receiver.url)), metadata=metadata
    )
    receiver.secret = created.secret
    created_cursor = (
        await stub.ListActiveAlertRules(alerts_pb2.ListActiveAlertRulesRequest(), metadata=metadata)
    ).changes_cursor
    firing = alerts_pb2.RecordAlertFiringRequest(
        auction_id="a-1",
        rule_id=created.rule.rule_id,
        firing_id="f-0123456789",
        value=501,
        reference_value=499,
    )
    first = await stub.RecordAlertFiring(firing, metadata=metadata)
    again = await stub.RecordAlertFiring(firing, metadata=metadata)
    assert first.delivery.delivery_id == again.delivery.delivery_id == "msg_f-0123456789"
    (got,) = await receiver.wait_for(1)
    assert got.verified
    assert got.payload["data"]["value"] == 501
    assert got.payload["data"]["referenceValue"] == 499
    # The second call queued nothing: one delivery in the log.
    log = await stub.ListAlertDeliveries(
        alerts_pb2.ListAlertDeliveriesRequest(auction_id="a-1"), metadata=metadata
    )
    assert [each.delivery_id for each in log.deliveries] == ["msg_f-0123456789"]

    await stub.SetAlertRulePaused(
        alerts_pb2.SetAlertRulePausedRequest(auction_id="a-1", rule_id=created.rule.rule_id, paused=True),
        metadata=metadata,
    )
    firing.firing_id = "f-after-pause"
    with pytest.raises(grpc.aio.AioRpcError) as paused:
        await stub.RecordAlertFiring(firing, metadata=metadata)
    assert paused.value.code() == grpc.StatusCode.NOT_FOUND
    active = await stub.ListActiveAlertRules(alerts_pb2.ListActiveAlertRulesRequest(), metadata=metadata)
    assert list(active.rules) == []
    # A listing of changes since a moment before the pause names the paused rule as removed.
    changes = await stub.ListActiveAlertRules(
        alerts_pb2.ListActiveAlertRulesRequest(changes_since=created_cursor), metadata=metadata
    )
    assert (list(changes.rules), list(changes.removed_rule_ids)) == ([], [created.rule.rule_id])
    assert changes.changes_cursor
    for bad in ("not-a-cursor", base64.urlsafe_b64encode(b"changes|nan").decode()):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListActiveAlertRules(
                alerts_pb2.ListActiveAlertRulesRequest(changes_since=bad), metadata=metadata
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as too_old:
        await stub.ListActiveAlertRules(
            alerts_pb2.ListActiveAlertRulesRequest(
                changes_since=base64.urlsafe_b64encode(b"changes|1.0").decode()
            ),
            metadata=metadata,
        )
    assert too_old.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_seller_manages_rules_of_their_auction_through_graphql(
    api: RunningGraphQL, receiver: WebhookReceiver
) -> None:
    seller = seller_token("a-1")
    created = await api.execute(CREATE, {"auction": "a-1", "rule": rule_input(receiver.url)}, token=seller)
    result = created.data["createAlertRule"]
    assert result["__typename"] == "AlertRuleCreated", result
    secret, rule = result["secret"], result["rule"]
    assert secret.startswith("whsec_")
    assert rule["kind"] == "ABOVE"
    assert (rule["threshold"], rule["hysteresis"], rule["cooldownSeconds"], rule["paused"]) == (
        500,
        50,
        300,
        False,
    )

    listed = await api.execute(RULES, {"auction": "a-1"}, token=seller)
    assert listed.data == {"alertRules": [{key: rule[key] for key in RULE_FIELDS.split()}]}

    updated = await api.execute(
        UPDATE,
        {"auction": "a-1", "id": rule["id"], "rule": rule_input(receiver.url, kind="BELOW", threshold=10)},
        token=seller,
    )
    assert updated.data["updateAlertRule"]["__typename"] == "AlertRule"
    assert (updated.data["updateAlertRule"]["kind"], updated.data["updateAlertRule"]["threshold"]) == (
        "BELOW",
        10,
    )
    paused = await api.execute(PAUSE, {"auction": "a-1", "id": rule["id"], "paused": True}, token=seller)
    assert paused.data["setAlertRulePaused"]["paused"] is True

    deleted = await api.execute(DELETE, {"auction": "a-1", "id": rule["id"]}, token=seller)
    assert deleted.data["deleteAlertRule"] == {
        "__typename": "AlertRuleDeleted",
        "ruleId": rule["id"],
        "auctionId": "a-1",
    }
    gone = await api.execute(DELETE, {"auction": "a-1", "id": rule["id"]}, token=seller)
    assert gone.data["deleteAlertRule"] == {"__typename": "AlertRuleNotFound", "ruleId": rule["id"]}
    assert (await api.execute(RULES, {"auction": "a-1"}, token=seller)).data == {"alertRules": []}


async def test_graphql_refuses_other_sellers_missing_tokens_and_bad_rules(
    api: RunningGraphQL, receiver: WebhookReceiver
) -> None:
    owner, other = seller_token("a-1"), seller_token("a-2")
    created = await api.execute(CREATE, {"auction": "a-1", "rule": rule_input(receiver.url)}, token=owner)
    rule_id = created.data["createAlertRule"]["rule"]["id"]

    foreign = await api.execute(CREATE, {"auction": "a-1", "rule": rule_input(receiver.url)}, token=other)
    assert foreign.data["createAlertRule"]["__typename"] == "NotAuthorized"
    for document, variables, field in [
        (UPDATE, {"auction": "a-1", "id": rule_id, "rule": rule_input(receiver.url)}, "updateAlertRule"),
        (PAUSE, {"auction": "a-1", "id": rule_id, "paused": True}, "setAlertRulePaused"),
        (DELETE, {"auction": "a-1", "id": rule_id}, "deleteAlertRule"),
        (SEND_TEST, {"auction": "a-1", "id": rule_id}, "sendTestAlertDelivery"),
    ]:
        refused = await api.execute(document, variables, token=other)
        assert refused.data[field]["__typename"] == "NotAuthorized", field
        # The other seller's own auction does not hold the rule either.
        elsewhere = await api.execute(document, {**variables, "auction": "a-2"}, token=other)
        assert elsewhere.data[field]["__typename"] == "AlertRuleNotFound", field
    listed = await api.execute(RULES, {"auction": "a-1"}, token=other)
    assert listed.error_codes() == ["NOT_AUTHORIZED"]
    log = await api.execute(DELIVERIES, {"auction": "a-1"}, token=other)
    assert log.error_codes() == ["NOT_AUTHORIZED"]
    anonymous = await api.execute(RULES, {"auction": "a-1"})
    assert anonymous.error_codes() == ["UNAUTHENTICATED"]
    no_token = await api.execute(CREATE, {"auction": "a-1", "rule": rule_input(receiver.url)})
    assert no_token.error_codes() == ["UNAUTHENTICATED"]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"webhookUrl": "http://hooks.example.com/x"}, "rule.webhookUrl"),
        ({"webhookUrl": "https://192.168.1.10/x"}, "rule.webhookUrl"),
        ({"kind": "DROP_PERCENT", "threshold": 150, "windowSeconds": 60}, "rule.threshold"),
        ({"kind": "ZERO_WHILE_LIVE", "windowSeconds": 0}, "rule.windowSeconds"),
        ({"cooldownSeconds": -1}, "rule.cooldownSeconds"),
    ]
    for changes, field in cases:
        bad = await api.execute(
            CREATE, {"auction": "a-1", "rule": rule_input(receiver.url, **changes)}, token=owner
        )
        assert bad.data["createAlertRule"]["__typename"] == "InvalidInput", changes
        assert bad.data["createAlertRule"]["field"] == field, changes


async def test_a_test_delivery_reaches_the_receiver_and_the_log_shows_it_delivered(
    api: RunningGraphQL, receiver: WebhookReceiver
) -> None:
    admin = admin_token()
    created = await api.execute(CREATE, {"auction": "a-9", "rule": rule_input(receiver.url)}, token=admin)
    receiver.secret = created.data["createAlertRule"]["secret"]
    rule_id = created.data["createAlertRule"]["rule"]["id"]
    sent = await api.execute(SEND_TEST, {"auction": "a-9", "id": rule_id}, token=admin)
    queued = sent.data["sendTestAlertDelivery"]
    assert queued["__typename"] == "AlertDelivery"
    assert (queued["ruleId"], queued["eventType"]) == (rule_id, "alert.test")

    (got,) = await receiver.wait_for(1)
    assert got.verified, "the receiver could not verify the delivery with the secret shown at creation"
    assert got.webhook_id == queued["id"]
    assert got.payload["type"] == "alert.test"

    async with asyncio.timeout(10):
        while True:
            log = await api.execute(DELIVERIES, {"auction": "a-9", "rule": rule_id}, token=admin)
            (entry,) = log.data["alertDeliveries"]["deliveries"]
            if entry["status"] != "PENDING":
                break
            await asyncio.sleep(0.02)
    assert (entry["id"], entry["status"], entry["attempts"], entry["lastStatusCode"], entry["lastError"]) == (
        queued["id"],
        "DELIVERED",
        1,
        200,
        "",
    )
    assert entry["deliveredAt"] is not None
    assert log.data["alertDeliveries"]["nextCursor"] is None


async def test_the_delivery_log_pages_newest_first(api: RunningGraphQL, receiver: WebhookReceiver) -> None:
    admin = admin_token()
    created = await api.execute(CREATE, {"auction": "a-5", "rule": rule_input(receiver.url)}, token=admin)
    rule_id = created.data["createAlertRule"]["rule"]["id"]
    sent = [
        (await api.execute(SEND_TEST, {"auction": "a-5", "id": rule_id}, token=admin)).data[
            "sendTestAlertDelivery"
        ]["id"]
        for _ in range(3)
    ]
    first = await api.execute(DELIVERIES, {"auction": "a-5", "first": 2}, token=admin)
    page = first.data["alertDeliveries"]
    assert [each["id"] for each in page["deliveries"]] == sent[::-1][:2]
    rest = await api.execute(
        DELIVERIES, {"auction": "a-5", "first": 2, "after": page["nextCursor"]}, token=admin
    )
    assert [each["id"] for each in rest.data["alertDeliveries"]["deliveries"]] == [sent[0]]
    assert rest.data["alertDeliveries"]["nextCursor"] is None
    bad = await api.execute(DELIVERIES, {"auction": "a-5", "after": "not-a-cursor"}, token=admin)
    assert bad.error_codes() == ["BAD_USER_INPUT"]


async def test_the_cooldown_holds_across_evaluators(
    ingest: AlertingIngest, receiver: WebhookReceiver
) -> None:
    # Two evaluators (a hand-over, a restart) reporting the same rule within its 60 s cooldown, each
    # with its own firing id: the second is refused, one delivery is queued.
    stub, metadata = ingest.stub(), ingest.metadata
    created = await stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(auction_id="a-1", spec=spec(receiver.url)), metadata=metadata
    )
    first = alerts_pb2.RecordAlertFiringRequest(
        auction_id="a-1", rule_id=created.rule.rule_id, firing_id="node-a-0001", value=501
    )
    first.fired_at.FromSeconds(1_800_000_000)
    await stub.RecordAlertFiring(first, metadata=metadata)
    second = alerts_pb2.RecordAlertFiringRequest()
    second.CopyFrom(first)
    second.firing_id = "node-b-0001"
    second.fired_at.FromSeconds(1_800_000_030)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RecordAlertFiring(second, metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The first evaluator's retry still answers its delivery.
    again = await stub.RecordAlertFiring(first, metadata=metadata)
    assert again.delivery.delivery_id == "msg_node-a-0001"
    later = alerts_pb2.RecordAlertFiringRequest()
    later.CopyFrom(second)
    later.fired_at.FromSeconds(1_800_000_060)
    await stub.RecordAlertFiring(later, metadata=metadata)
    log = await stub.ListAlertDeliveries(
        alerts_pb2.ListAlertDeliveriesRequest(auction_id="a-1"), metadata=metadata
    )
    assert sorted(each.delivery_id for each in log.deliveries) == ["msg_node-a-0001", "msg_node-b-0001"]
