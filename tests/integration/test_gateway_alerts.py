"""Alerts end to end: real python-socketio viewers join and leave a real gateway, whose evaluator reads
the rules from a real ingest service and reports each firing to it; the ingest service sends the webhook
to a real HTTPS receiver on loopback that verifies it with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2

from ingest_service.alerts.domain import DeliveryStatus
from socket_gateway.live.alerts import AlertService
from tests.alert_support import AlertingIngest, TlsMaterial, WebhookReceiver, alerting_ingest
from tests.gateway_support import RunningGateway, Viewer, gateway_config, running_gateway, wait_until
from tests.redis_support import RedisServer, redis_server

__all__ = ["redis_server"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial.make(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
async def ingest(tmp_path: Path, tls: TlsMaterial) -> AsyncIterator[AlertingIngest]:
    async with alerting_ingest(tmp_path, tls) as running:
        yield running


@pytest.fixture
async def gateway(tmp_path: Path, ingest: AlertingIngest) -> AsyncIterator[RunningGateway]:
    config = gateway_config(tmp_path, ingest_target=ingest.target, alert_rules_refresh_seconds=0.1)
    async with running_gateway(config) as running:
        yield running


async def receiving(tls: TlsMaterial) -> WebhookReceiver:
    receiver = WebhookReceiver(tls)
    await receiver.start()
    return receiver


async def create_rule(
    ingest: AlertingIngest,
    receiver: WebhookReceiver,
    auction: str,
    *,
    threshold: int,
    hysteresis: int = 0,
    cooldown_seconds: int = 0,
) -> str:
    created = await ingest.stub().CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(
            auction_id=auction,
            spec=alerts_pb2.AlertRuleSpec(
                kind=alerts_pb2.ALERT_KIND_ABOVE,
                metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
                webhook_url=receiver.url,
                threshold=threshold,
                hysteresis=hysteresis,
                cooldown_seconds=cooldown_seconds,
            ),
        ),
        metadata=ingest.metadata,
    )
    receiver.secret = created.secret
    return str(created.rule.rule_id)


def alerts_of(gateway: RunningGateway) -> AlertService:
    assert gateway.gateway.alerts is not None
    return gateway.gateway.alerts


async def join(gateway: RunningGateway, auction: str, count: int, first: int = 0) -> list[Viewer]:
    viewers = [
        await gateway.viewer({"auctionId": auction, "viewerId": f"v{first + n}"}) for n in range(count)
    ]
    return viewers


async def settle(watcher: Viewer, count: int) -> None:
    """Waits until the room's update shows ``count``: the gateway has evaluated that change by then
    (the evaluator runs when the counts change, before the room is told)."""
    await watcher.wait_for(count)


async def test_a_crossing_delivers_one_signed_webhook_within_5_s_and_hysteresis_holds_it_back(
    ingest: AlertingIngest, gateway: RunningGateway, tls: TlsMaterial
) -> None:
    receiver = await receiving(tls)
    try:
        rule_id = await create_rule(ingest, receiver, "live-a", threshold=2, hysteresis=1, cooldown_seconds=0)
        alerts = alerts_of(gateway)
        await wait_until(lambda: alerts.evaluator.rule_count == 1, "the gateway to load the rule")

        watcher, second = await join(gateway, "live-a", 2)
        await settle(watcher, 2)
        assert receiver.received == []
        crossed_at = time.monotonic()
        (third,) = await join(gateway, "live-a", 1, first=2)
        (got,) = await receiver.wait_for(1, within=5.0)
        assert time.monotonic() - crossed_at < 5.0
        assert got.verified
        assert got.payload["type"] == "alert.fired"
        assert (got.payload["data"]["ruleId"], got.payload["data"]["value"]) == (rule_id, 3)

        # Hovering at the threshold (3 -> 2 -> 3) fires nothing: 2 is not back by the hysteresis.
        await third.disconnect()
        await settle(watcher, 2)
        (again,) = await join(gateway, "live-a", 1, first=3)
        await settle(watcher, 3)
        assert alerts.evaluator.fired_total == 1
        # Down to 1 re-arms the rule; the next crossing fires again.
        await again.disconnect()
        await second.disconnect()
        await settle(watcher, 1)
        await join(gateway, "live-a", 2, first=4)
        await settle(watcher, 3)
        both = await receiver.wait_for(2, within=5.0)
        assert alerts.evaluator.fired_total == 2
        assert len({each.webhook_id for each in both}) == 2
        assert all(each.verified for each in both)

        async with asyncio.timeout(10):
            while True:
                log = await ingest.alerts.list_deliveries("live-a", rule_id, 10)
                if all(each.status is DeliveryStatus.DELIVERED for each in log):
                    break
                await asyncio.sleep(0.02)
        assert len(log) == 2
        assert len(receiver.received) == 2
    finally:
        await receiver.stop()


async def test_a_second_crossing_within_the_cooldown_sends_nothing(
    ingest: AlertingIngest, gateway: RunningGateway, tls: TlsMaterial
) -> None:
    receiver = await receiving(tls)
    try:
        await create_rule(ingest, receiver, "live-b", threshold=1, cooldown_seconds=3600)
        alerts = alerts_of(gateway)
        await wait_until(lambda: alerts.evaluator.rule_count == 1, "the gateway to load the rule")
        watcher, second = await join(gateway, "live-b", 2)
        await receiver.wait_for(1, within=5.0)
        await second.disconnect()
        await settle(watcher, 1)
        await join(gateway, "live-b", 1, first=2)
        await settle(watcher, 2)
        assert (alerts.evaluator.fired_total, alerts.evaluator.suppressed_total) == (1, 1)
        # A test delivery after it: once it has arrived, anything the crossing sent would have too.
        (rule,) = await ingest.alerts.list_rules("live-b")
        await ingest.stub().SendTestAlertDelivery(
            alerts_pb2.SendTestAlertDeliveryRequest(auction_id="live-b", rule_id=rule.rule_id),
            metadata=ingest.metadata,
        )
        got = await receiver.wait_for(2, within=5.0)
        assert [each.payload["type"] for each in got] == ["alert.fired", "alert.test"]
    finally:
        await receiver.stop()


async def test_a_paused_rule_is_not_evaluated(
    ingest: AlertingIngest, gateway: RunningGateway, tls: TlsMaterial
) -> None:
    receiver = await receiving(tls)
    try:
        rule_id = await create_rule(ingest, receiver, "live-c", threshold=0)
        alerts = alerts_of(gateway)
        await wait_until(lambda: alerts.evaluator.rule_count == 1, "the gateway to load the rule")
        await ingest.stub().SetAlertRulePaused(
            alerts_pb2.SetAlertRulePausedRequest(auction_id="live-c", rule_id=rule_id, paused=True),
            metadata=ingest.metadata,
        )
        await wait_until(lambda: alerts.evaluator.rule_count == 0, "the gateway to drop the paused rule")
        (watcher,) = await join(gateway, "live-c", 1)
        await settle(watcher, 1)
        assert alerts.evaluator.fired_total == 0
    finally:
        await receiver.stop()


async def test_with_redis_only_the_sampler_lease_holder_evaluates_and_one_webhook_is_sent(
    tmp_path: Path, ingest: AlertingIngest, tls: TlsMaterial, redis_server: RedisServer
) -> None:
    """Two gateway nodes, viewers on both: the global count crosses once, one node evaluates, and the
    receiver gets one delivery (two evaluators would send two, each with its own firing id)."""
    receiver = await receiving(tls)
    configs = [
        gateway_config(
            tmp_path / name,
            ingest_target=ingest.target,
            redis_url=redis_server.url,
            node_lease_seconds=2.0,
            gateway_id=name,
            alert_rules_refresh_seconds=0.1,
            live_update_interval_ms=500,
        )
        for name in ("a", "b")
    ]
    for config in configs:
        Path(config.outbox_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        await create_rule(ingest, receiver, "global", threshold=2, cooldown_seconds=0)
        async with running_gateway(configs[0]) as node_a, running_gateway(configs[1]) as node_b:
            nodes = [alerts_of(node_a), alerts_of(node_b)]
            clusters = [node_a.gateway.cluster, node_b.gateway.cluster]
            await wait_until(
                lambda: any(cluster is not None and cluster.sampler.token for cluster in clusters),
                "a node to take the sampler lease",
            )
            # Three rounds of each node's rules loop after that: each has decided whether it leads.
            rounds = [node.rounds for node in nodes]
            await wait_until(
                lambda: all(node.rounds >= seen + 3 for node, seen in zip(nodes, rounds, strict=True)),
                "three rounds of the rules loop on both nodes",
            )
            assert sorted(node.evaluator.rule_count for node in nodes) == [0, 1]
            crossed_at = time.monotonic()
            await node_a.viewer({"auctionId": "global", "viewerId": "a0"})
            await node_a.viewer({"auctionId": "global", "viewerId": "a1"})
            await node_b.viewer({"auctionId": "global", "viewerId": "b0"})
            (got,) = await receiver.wait_for(1, within=5.0)
            assert time.monotonic() - crossed_at < 5.0
            assert got.verified
            assert got.payload["data"]["value"] == 3
            assert sum(node.evaluator.fired_total for node in nodes) == 1
            (rule,) = await ingest.alerts.list_rules("global")
            assert len(await ingest.alerts.list_deliveries("global", rule.rule_id, 10)) == 1
    finally:
        await receiver.stop()
