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

from ingest_service.alerts.domain import AlertRule, DeliveryStatus
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.grpc_api.alert_rules import CHANGES_MARGIN_SECONDS
from socket_gateway.live.alerts import AlertService
from tests.alert_support import AlertingIngest, TlsMaterial, WebhookReceiver, alerting_ingest
from tests.gateway_support import RunningGateway, Viewer, gateway_config, running_gateway, wait_until
from tests.redis_support import RedisServer, redis_server
from tests.support import FakeClock

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


class CountedAlertStore(SqliteAlertStore):
    """The SQLite alert store, counting the rules the evaluator's listings read from it."""

    rules_read = 0

    async def list_active_rules(self, after_rule_id: str, limit: int) -> list[AlertRule]:
        found = await super().list_active_rules(after_rule_id, limit)
        self.rules_read += len(found)
        return found

    async def list_rule_changes(
        self, since: float, after: tuple[float, str] | None, limit: int
    ) -> list[AlertRule]:
        found = await super().list_rule_changes(since, after, limit)
        self.rules_read += len(found)
        return found


async def test_a_reload_reads_only_the_rules_changed_since_the_last_one(
    tmp_path: Path, tls: TlsMaterial
) -> None:
    """Proves the reloads are incremental: with 30 rules loaded, reloads read nothing more from the
    store until a rule changes; then an update, a pause, a deletion and a creation take effect, read as
    those four rules alone (again for as long as the listings' margin looks back)."""
    clock = FakeClock()
    receiver = await receiving(tls)
    try:
        async with alerting_ingest(tmp_path, tls, clock=clock, store_class=CountedAlertStore) as ingest:
            store = ingest.alerts
            assert isinstance(store, CountedAlertStore)
            rule_ids = [
                await create_rule(ingest, receiver, f"many-{n % 10}", threshold=100) for n in range(30)
            ]
            # Past the margin the listings of changes look back by: these rules are old news.
            clock.advance(CHANGES_MARGIN_SECONDS * 2)
            config = gateway_config(tmp_path, ingest_target=ingest.target, alert_rules_refresh_seconds=0.05)
            async with running_gateway(config) as gateway:
                alerts = alerts_of(gateway)
                evaluator = alerts.evaluator
                await wait_until(lambda: evaluator.rule_count == 30, "the gateway to load the rules")

                async def reloads(count: int) -> None:
                    rounds = alerts.rounds
                    await wait_until(lambda: alerts.rounds >= rounds + count, f"{count} more reloads")

                await reloads(1)
                read = store.rules_read
                await reloads(5)
                assert store.rules_read == read, "reloads of unchanged rules read them again"

                updated, paused, deleted = rule_ids[:3]
                stub, metadata = ingest.stub(), ingest.metadata
                spec = alerts_pb2.AlertRuleSpec(
                    kind=alerts_pb2.ALERT_KIND_ABOVE,
                    metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
                    webhook_url=receiver.url,
                    threshold=200,
                )
                await stub.UpdateAlertRule(
                    alerts_pb2.UpdateAlertRuleRequest(auction_id="many-0", rule_id=updated, spec=spec),
                    metadata=metadata,
                )
                await stub.SetAlertRulePaused(
                    alerts_pb2.SetAlertRulePausedRequest(auction_id="many-1", rule_id=paused, paused=True),
                    metadata=metadata,
                )
                await stub.DeleteAlertRule(
                    alerts_pb2.DeleteAlertRuleRequest(auction_id="many-2", rule_id=deleted), metadata=metadata
                )
                created = await create_rule(ingest, receiver, "many-new", threshold=5)

                def applied() -> bool:
                    held = evaluator.rule(updated)
                    return (
                        held is not None
                        and held.threshold == 200
                        and evaluator.rule(paused) is None
                        and evaluator.rule(deleted) is None
                        and evaluator.rule(created) is not None
                    )

                await wait_until(applied, "the changes to take effect")
                assert evaluator.rule_count == 29
                assert "many-new" in evaluator.auctions
                # Each listing since reads the changed rules only (the deletion is not a rule).
                before = store.rules_read
                await reloads(3)
                assert 0 < store.rules_read - before <= 3 * 3 * 2
                clock.advance(CHANGES_MARGIN_SECONDS * 2)
                await reloads(1)
                read = store.rules_read
                await reloads(5)
                assert store.rules_read == read
                assert evaluator.rule_count == 29
    finally:
        await receiver.stop()
