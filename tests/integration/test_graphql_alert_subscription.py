"""``subscription { alertDeliveries(auctionId) }`` over graphql-transport-ws: a real GraphQL API over a
real ingest service that sends a test delivery to a real HTTPS receiver; the client is an aiohttp
WebSocket speaking graphql-transport-ws frame by frame (tests/integration/test_graphql_subscriptions.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2

from tests.alert_support import AlertingIngest, TlsMaterial, WebhookReceiver, alerting_ingest
from tests.graphql_support import RunningGraphQL, graphql_config, running_graphql, seller_token
from tests.integration.test_graphql_subscriptions import TransportWS, error_codes_of

DELIVERIES = """
subscription Deliveries($id: ID!) {
  alertDeliveries(auctionId: $id) { id ruleId eventType status attempts lastError }
}
"""


@asynccontextmanager
async def client(api: RunningGraphQL, bearer: str) -> AsyncIterator[TransportWS]:
    async with api.session.ws_connect(f"{api.base_url}/graphql", protocols=("graphql-transport-ws",)) as ws:
        transport = TransportWS(ws)
        ack = await transport.init({"Authorization": f"Bearer {bearer}"})
        assert ack["type"] == "connection_ack", ack
        yield transport


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[AlertingIngest, RunningGraphQL, WebhookReceiver]]:
    tls = TlsMaterial.make(tmp_path)
    receiver = WebhookReceiver(tls)
    await receiver.start()
    try:
        async with (
            alerting_ingest(tmp_path, tls) as ingest,
            running_graphql(graphql_config(ingest.target)) as api,
        ):
            yield ingest, api, receiver
    finally:
        await receiver.stop()


async def test_a_subscriber_sees_a_delivery_queued_and_delivered(
    stack: tuple[AlertingIngest, RunningGraphQL, WebhookReceiver],
) -> None:
    ingest, api, receiver = stack
    # One delivery finished before subscribing: the subscription does not send it (the query has it).
    created = await ingest.stub().CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(
            auction_id="a-1",
            spec=alerts_pb2.AlertRuleSpec(
                kind=alerts_pb2.ALERT_KIND_ABOVE,
                metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
                threshold=10,
                webhook_url=receiver.url,
            ),
        ),
        metadata=ingest.metadata,
    )
    rule_id = created.rule.rule_id
    test = alerts_pb2.SendTestAlertDeliveryRequest(auction_id="a-1", rule_id=rule_id)
    earlier = await ingest.stub().SendTestAlertDelivery(test, metadata=ingest.metadata)
    await receiver.wait_for(1)

    # The next one is held unanswered by the receiver: pending until the test lets it through.
    receiver.hold_request = 2
    async with client(api, seller_token("a-1")) as ws:
        operation = await ws.subscribe("a-1", DELIVERIES)
        sent = await ingest.stub().SendTestAlertDelivery(test, metadata=ingest.metadata)
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["status"] != "DELIVERED":
            message = await ws.receive()
            assert (message["type"], message.get("id")) == ("next", operation), message
            seen.append(message["payload"]["data"]["alertDeliveries"])
            # Seen pending (new since the subscription's first read, or pending at it): let it through.
            receiver.release.set()
        assert seen[0]["status"] == "PENDING"
        assert {each["id"] for each in seen} == {sent.delivery.delivery_id}
        assert earlier.delivery.delivery_id not in {each["id"] for each in seen}
        assert seen[-1] == {
            "id": sent.delivery.delivery_id,
            "ruleId": rule_id,
            "eventType": "alert.test",
            "status": "DELIVERED",
            "attempts": 1,
            "lastError": "",
        }


async def test_another_sellers_auction_is_refused(
    stack: tuple[AlertingIngest, RunningGraphQL, WebhookReceiver],
) -> None:
    _ingest, api, _receiver = stack
    async with client(api, seller_token("a-2")) as ws:
        operation = await ws.subscribe("a-1", DELIVERIES)
        assert await error_codes_of(ws, operation) == ["NOT_AUTHORIZED"]
