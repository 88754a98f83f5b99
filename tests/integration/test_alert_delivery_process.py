"""The delivery queue survives its sender: ``python -m ingest_service`` SIGKILLed while a delivery is
pending (mid-attempt, its request held unanswered by the receiver) sends it once it is started again,
under the same ``webhook-id``, to a real HTTPS receiver on loopback that verifies the signature."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ingest_service.alerts.domain import DeliveryStatus, new_secret
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from tests.alert_support import TlsMaterial, WebhookReceiver
from tests.fault_support import FAULT_WAIT, ServiceProcess, base_env
from tests.integration.test_alert_webhooks import fired


def ingest_env(store: Path, tls: TlsMaterial) -> dict[str, str]:
    return base_env(
        ANALYTICS_SQLITE_PATH=str(store),
        INGEST_PORT="0",
        ALERT_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        ALERT_WEBHOOK_CA_FILE=str(tls.ca_file),
        ALERT_DELIVERY_TIMEOUT_SECONDS="0.5",
        ALERT_DELIVERY_INITIAL_BACKOFF_SECONDS="0.05",
        ALERT_DELIVERY_MAX_BACKOFF_SECONDS="0.2",
        # A killed sender's claim runs out after this: the restarted one claims the delivery then.
        ALERT_DELIVERY_LEASE_SECONDS="1",
        ALERT_DELIVERY_POLL_SECONDS="0.05",
    )


def delivery_attempts(process: ServiceProcess, status: str) -> list[dict[str, object]]:
    return [entry for entry in process.entries("Alert delivery attempt") if entry.get("status") == status]


@pytest.mark.timeout(60)
async def test_sigkilled_sender_delivers_the_pending_delivery_after_a_restart_with_the_same_id(
    tmp_path: Path,
) -> None:
    tls = TlsMaterial.make(tmp_path)
    receiver = WebhookReceiver(tls, secret=new_secret(), answers=[503, 503], hold_request=2)
    await receiver.start()
    store_path = tmp_path / "analytics.sqlite3"
    snapshots = await SqliteSnapshotStore.open(str(store_path), retention_days=90)
    alerts = await SqliteAlertStore.open(snapshots, retention_days=90, clock=time.time)
    delivery = fired(receiver.url, receiver.secret)
    await alerts.enqueue_delivery(delivery)
    await alerts.close()
    await snapshots.close()
    try:
        first = await ServiceProcess.start("ingest_service", ingest_env(store_path, tls))
        # Attempt 1 is answered 503; attempt 2 is held unanswered: the sender is mid-attempt.
        await asyncio.wait_for(receiver.holding.wait(), FAULT_WAIT)
        await first.kill()
        assert first.process.returncode == -9
        receiver.release.set()

        second = await ServiceProcess.start("ingest_service", ingest_env(store_path, tls))
        try:
            got = await receiver.wait_for(3, within=FAULT_WAIT)
            await second.log_entry("Alert delivery attempt")
        finally:
            await second.kill()
    finally:
        await receiver.stop()

    assert {each.webhook_id for each in got} == {delivery.delivery_id}
    assert all(each.verified for each in got)
    assert [each.answered for each in receiver.received] == [503, 503, 200]
    (delivered,) = delivery_attempts(second, DeliveryStatus.DELIVERED.value)
    # The restarted sender's first attempt is delivered: attempt 3 (the kill cut off attempt 2).
    assert delivered["attempt"] == 3
