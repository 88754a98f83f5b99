"""A SIGKILLed evaluator neither repeats nor loses a firing: real ``python -m socket_gateway`` processes
killed with SIGKILL and started again, a real ``python -m ingest_service`` (killed too), real
python-socketio viewers, and a real HTTPS receiver on loopback verifying every webhook with
``standardwebhooks``.

Each rule's armed state is recorded by the ingest service; the gateway that starts next reads it back
and, once its viewers have reconnected (``GATEWAY_ALERT_SETTLE_SECONDS``), compares it with the counts.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2
from viewer_analytics.v1 import alert_rule_service_pb2_grpc as alerts_grpc

from service_common.internal_auth import internal_key_metadata
from tests.alert_support import TlsMaterial, WebhookReceiver
from tests.fault_support import FAULT_WAIT, ServiceProcess, poll
from tests.integration.test_alert_delivery_process import ingest_env
from tests.integration.test_faults import close_all, gateway_env, gateway_port, viewers
from tests.stack_support import free_port
from tests.support import TEST_KEY

AUCTION = "restart-1"


async def start_ingest(store: Path, tls: TlsMaterial, port: int) -> ServiceProcess:
    process = await ServiceProcess.start(
        "ingest_service", {**ingest_env(store, tls), "INGEST_PORT": str(port), "INGEST_METRICS_PORT": "0"}
    )
    await process.log_entry("Ingest service listening")
    return process


async def start_gateway(outbox: Path, ingest_port: int) -> tuple[ServiceProcess, str]:
    env = gateway_env(
        outbox,
        ingest_port,
        GATEWAY_ALERT_RULES_REFRESH_SECONDS="0.2",
        GATEWAY_ALERT_SETTLE_SECONDS="1",
    )
    process = await ServiceProcess.start("socket_gateway", env)
    return process, f"http://127.0.0.1:{await gateway_port(process)}"


@pytest.mark.timeout(90)
async def test_a_sigkilled_evaluator_neither_repeats_nor_loses_a_firing(tmp_path: Path) -> None:
    tls = TlsMaterial.make(tmp_path)
    receiver = WebhookReceiver(tls)
    await receiver.start()
    store, outbox, port = tmp_path / "analytics.sqlite3", tmp_path / "outbox.sqlite3", free_port()
    processes: list[ServiceProcess] = []
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = alerts_grpc.AlertRuleServiceStub(channel)
    metadata = tuple(internal_key_metadata(TEST_KEY))

    async def recorded_armed() -> bool:
        listed = await stub.ListActiveAlertRules(alerts_pb2.ListActiveAlertRulesRequest(), metadata=metadata)
        (rule,) = listed.rules
        return bool(rule.armed_state == alerts_pb2.ALERT_ARMED_STATE_ARMED)

    async def fired_deliveries() -> list[alerts_pb2.AlertDelivery]:
        page = await stub.ListAlertDeliveries(
            alerts_pb2.ListAlertDeliveriesRequest(auction_id=AUCTION), metadata=metadata
        )
        return [each for each in page.deliveries if each.event_type == "alert.fired"]

    try:
        ingest = await start_ingest(store, tls, port)
        processes.append(ingest)
        created = await stub.CreateAlertRule(
            alerts_pb2.CreateAlertRuleRequest(
                auction_id=AUCTION,
                spec=alerts_pb2.AlertRuleSpec(
                    kind=alerts_pb2.ALERT_KIND_ABOVE,
                    metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
                    webhook_url=receiver.url,
                    threshold=1,
                    # No cooldown: nothing but the recorded state keeps a second report of one crossing out.
                    cooldown_seconds=0,
                ),
            ),
            metadata=metadata,
        )
        receiver.secret = created.secret

        # 1. A crossing reported and delivered; its evaluator SIGKILLed.
        first, first_url = await start_gateway(outbox, port)
        processes.append(first)
        await first.log_entry("Alert rules loaded")
        watching = await viewers(first_url, [AUCTION] * 2)
        (delivered,) = await receiver.wait_for(1, within=FAULT_WAIT)
        await first.kill()
        await close_all(watching)

        # 2. The next evaluator starts at zero viewers; they come back past the threshold while it
        # settles: the crossing it reads as recorded (fired) is not reported again.
        second, second_url = await start_gateway(outbox, port)
        processes.append(second)
        await second.log_entry("Alert rules loaded")
        watching = await viewers(second_url, [AUCTION] * 2)
        await watching[0].wait_for(2)
        await second.log_entry("Alert rules settled")
        # Back under the threshold: armed again, and recorded so (the reports go in order, so a
        # repeated firing would have been recorded before this).
        await watching.pop().disconnect()
        await poll(recorded_armed, "the rule recorded armed")
        assert len(await fired_deliveries()) == 1

        # 3. The ingest service down, the next crossing is made and waits in the evaluator's memory,
        # which is SIGKILLed; its successor starts with the viewers back before it can read the rules.
        await ingest.kill()
        watching += await viewers(second_url, [AUCTION])
        await watching[0].wait_for(2)
        await second.line_with("Alert firing not reported yet")
        await second.kill()
        await close_all(watching)
        third, third_url = await start_gateway(outbox, port)
        processes.append(third)
        watching = await viewers(third_url, [AUCTION] * 2)
        await watching[0].wait_for(2)
        processes.append(await start_ingest(store, tls, port))
        # The rule, still recorded armed, meets counts past its threshold: the crossing made while no
        # evaluator could report it is delivered now.
        _first, recovered = await receiver.wait_for(2, within=FAULT_WAIT)
        await close_all(watching)
    finally:
        await channel.close()
        for process in processes:
            await process.kill()
        await receiver.stop()

    assert all(each.verified for each in receiver.received if each.webhook_id)
    assert delivered.webhook_id != recovered.webhook_id
    assert [each.payload["data"]["value"] for each in (delivered, recovered)] == [2, 2]
    assert len({each.webhook_id for each in receiver.received}) == len(receiver.received) == 2
    assert len(third.entries("Alert fired")) == 1
