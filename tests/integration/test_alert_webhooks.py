"""Alert deliveries sent to a real HTTPS receiver on loopback, which verifies every signature with the
``standardwebhooks`` package: once per delivery, retried with the same id while the receiver is down,
and never to an address the target policy refuses (literal, after resolution, or through a redirect).

The sender runs in this process on a real SQLite store; only DNS is faked (FakeResolver), where a test
needs a name to resolve to an address of its choosing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ingest_service.alerts.domain import (
    EVENT_FIRED,
    AlertDelivery,
    AlertKind,
    AlertMetric,
    AlertRule,
    AlertRuleSpec,
    DeliveryStatus,
    new_delivery,
    new_secret,
)
from ingest_service.alerts.sender import WebhookSender
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.alerts.targets import HostResolver, SystemResolver, TargetPolicy
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.log_limits import RateLimitedLog
from tests.alert_support import FAST, LOOPBACK, FakeResolver, TlsMaterial, WebhookReceiver

PUBLIC_ONLY = TargetPolicy()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial.make(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture
async def receiver(tls: TlsMaterial) -> AsyncIterator[WebhookReceiver]:
    running = WebhookReceiver(tls, secret=new_secret())
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def alert_store(tmp_path: Path) -> AsyncIterator[SqliteAlertStore]:
    snapshots = await SqliteSnapshotStore.open(str(tmp_path / "alerts.sqlite3"), retention_days=90)
    store = await SqliteAlertStore.open(snapshots, retention_days=90, clock=time.time)
    yield store
    await store.close()
    await snapshots.close()


@dataclass
class Sending:
    store: SqliteAlertStore
    sender: WebhookSender

    async def queue(self, delivery: AlertDelivery) -> None:
        await self.store.enqueue_delivery(delivery)
        self.sender.wake()

    async def finished(self, delivery_id: str, auction_id: str = "a-1") -> AlertDelivery:
        """Waits until the delivery is no longer pending (the store is the sender's only output)."""
        async with asyncio.timeout(10):
            while True:
                (found,) = [
                    d
                    for d in await self.store.list_deliveries(auction_id, None, 100)
                    if d.delivery_id == delivery_id
                ]
                if found.status is not DeliveryStatus.PENDING:
                    return found
                await asyncio.sleep(0.02)


StartSender = Callable[[TargetPolicy, HostResolver], Sending]


@pytest.fixture
async def start_sender(alert_store: SqliteAlertStore, tls: TlsMaterial) -> AsyncIterator[StartSender]:
    """Starts a sender on the test's store with the given policy and resolver; stopped at the end."""
    tasks: list[asyncio.Task[None]] = []

    def start(policy: TargetPolicy, resolver: HostResolver) -> Sending:
        sender = WebhookSender(
            alert_store,
            policy,
            FAST,
            clock=time.time,
            resolver=resolver,
            ssl_context=tls.client_context,
            log=RateLimitedLog(logging.getLogger(__name__)),
        )
        tasks.append(asyncio.create_task(sender.run()))
        return Sending(alert_store, sender)

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def rule_for(url: str, secret: str) -> AlertRule:
    spec = AlertRuleSpec(AlertKind.ABOVE, AlertMetric.CONNECTIONS, 500, 0, 50, 300, url)
    now = time.time()
    return AlertRule("rule_test", "a-1", spec, secret, now, now)


def fired(url: str, secret: str) -> AlertDelivery:
    return new_delivery(rule_for(url, secret), EVENT_FIRED, time.time(), {"value": 501})


async def test_a_queued_delivery_arrives_once_signed_per_standard_webhooks(
    receiver: WebhookReceiver, start_sender: StartSender
) -> None:
    sending = start_sender(LOOPBACK, SystemResolver())
    delivery = fired(receiver.url, receiver.secret)
    await sending.queue(delivery)

    done = await sending.finished(delivery.delivery_id)
    # A second delivery through the same sender: once it has arrived, the sender has moved past the
    # first, so a duplicate of the first would have arrived by then too.
    second = fired(receiver.url, receiver.secret)
    await sending.queue(second)
    await sending.finished(second.delivery_id)

    got = await receiver.wait_for(2)
    assert [each.webhook_id for each in got] == [delivery.delivery_id, second.delivery_id]
    # What the ingest service's /metrics reads (ingest_alert_delivery_attempts_total).
    assert sending.sender.attempts == {"delivered": 2}
    first = got[0]
    assert first.verified, "the standardwebhooks package refused the signature"
    assert first.body == delivery.payload.encode()
    assert first.payload["type"] == EVENT_FIRED
    assert first.payload["data"]["ruleId"] == "rule_test"
    assert first.payload["data"]["value"] == 501
    assert abs(int(first.timestamp) - time.time()) < 30
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == (
        DeliveryStatus.DELIVERED,
        1,
        200,
        "",
    )


async def test_a_signature_under_another_secret_is_refused_by_the_receiver(
    receiver: WebhookReceiver, start_sender: StartSender
) -> None:
    # The receiver's check is real: a delivery signed with another rule's secret fails it.
    sending = start_sender(LOOPBACK, SystemResolver())
    delivery = fired(receiver.url, new_secret())
    await sending.queue(delivery)
    await sending.finished(delivery.delivery_id)
    (got,) = await receiver.wait_for(1)
    assert not got.verified


async def test_receiver_down_for_many_retries_gets_the_delivery_once_with_the_same_id(
    receiver: WebhookReceiver, start_sender: StartSender
) -> None:
    # First it answers 503 three times, then it is gone (connections refused) for a dozen retries
    # (minutes with the default backoff, a fraction of a second with FAST's), then it is back.
    receiver.answers = [503, 503, 503]
    sending = start_sender(LOOPBACK, SystemResolver())
    delivery = fired(receiver.url, receiver.secret)
    await sending.queue(delivery)
    await receiver.wait_for(3)
    await receiver.stop()

    async with asyncio.timeout(10):
        while True:
            (pending,) = await sending.store.list_deliveries("a-1", None, 10)
            if pending.attempts >= 15:
                break
            await asyncio.sleep(0.02)
    assert pending.status is DeliveryStatus.PENDING
    assert "ClientConnectorError" in pending.last_error or "Connect" in pending.last_error

    await receiver.start()
    done = await sending.finished(delivery.delivery_id)
    got = receiver.received
    assert [each.answered for each in got] == [503, 503, 503, 200]
    assert {each.webhook_id for each in got} == {delivery.delivery_id}
    # Each attempt is signed afresh (its own timestamp), and each signature verifies.
    assert all(each.verified for each in got)
    assert done.status is DeliveryStatus.DELIVERED
    assert done.attempts >= 16
    assert done.last_error == ""


async def test_a_literal_private_or_loopback_address_is_refused_without_a_connection(
    receiver: WebhookReceiver, start_sender: StartSender
) -> None:
    # Without the allow-list, the receiver's own loopback URL is refused: it would answer, and sees nothing.
    sending = start_sender(PUBLIC_ONLY, SystemResolver())
    urls = [
        receiver.url,
        receiver.url_at("[::ffff:127.0.0.1]"),
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
    ]
    deliveries = [fired(url, receiver.secret) for url in urls]
    for delivery in deliveries:
        await sending.queue(delivery)
    for delivery, url in zip(deliveries, urls, strict=True):
        done = await sending.finished(delivery.delivery_id)
        assert done.status is DeliveryStatus.FAILED, url
        assert done.last_error.startswith("refused:"), url
        assert "not a public address" in done.last_error, url
        assert done.attempts == 1, "a refusal is final, not retried"
    assert receiver.received == []


async def test_a_name_resolving_to_a_private_address_is_refused_and_the_checked_address_is_used(
    receiver: WebhookReceiver, start_sender: StartSender
) -> None:
    resolver = FakeResolver(
        {
            "hooks.example.test": ["127.0.0.1"],
            # One public and one loopback answer: every address must pass, or the connection could
            # land on the private one.
            "mixed.example.test": ["93.184.215.14", "127.0.0.1"],
        }
    )
    refusing = start_sender(PUBLIC_ONLY, resolver)
    named = fired(receiver.url_at("hooks.example.test"), receiver.secret)
    mixed = fired(receiver.url_at("mixed.example.test"), receiver.secret)
    await refusing.queue(named)
    await refusing.queue(mixed)
    for delivery in (named, mixed):
        done = await refusing.finished(delivery.delivery_id)
        assert done.status is DeliveryStatus.FAILED
        assert "resolves to 127.0.0.1 is not a public address" in done.last_error
    assert receiver.received == []
    assert resolver.lookups.count("hooks.example.test") == 1


async def test_a_name_resolving_to_an_allowed_address_is_reached_at_that_address(
    receiver: WebhookReceiver, start_sender: StartSender
) -> None:
    # The control for the test above: with loopback allowed, the name (known only to FakeResolver,
    # so the system's resolver could not have been asked) reaches the receiver, TLS checked for it.
    resolver = FakeResolver({"hooks.example.test": ["127.0.0.1"]})
    sending = start_sender(LOOPBACK, resolver)
    delivery = fired(receiver.url_at("hooks.example.test"), receiver.secret)
    await sending.queue(delivery)
    done = await sending.finished(delivery.delivery_id)
    assert done.status is DeliveryStatus.DELIVERED, done.last_error
    (got,) = await receiver.wait_for(1)
    assert got.verified
    assert resolver.lookups == ["hooks.example.test"]


async def test_a_redirect_is_not_followed(receiver: WebhookReceiver, start_sender: StartSender) -> None:
    # The redirect points at a loopback address the receiver serves too: following it would show.
    receiver.redirect_to = f"https://127.0.0.1:{receiver.port}/landed"
    sending = start_sender(LOOPBACK, SystemResolver())
    delivery = fired(receiver.url, receiver.secret)
    await sending.queue(delivery)
    done = await sending.finished(delivery.delivery_id)
    assert done.status is DeliveryStatus.FAILED
    assert done.last_error.startswith("redirect 307")
    assert "not followed" in done.last_error
    assert done.attempts == 1
    assert [each.path for each in receiver.received] == ["/hook"]


async def test_an_http_url_is_refused(receiver: WebhookReceiver, start_sender: StartSender) -> None:
    sending = start_sender(LOOPBACK, SystemResolver())
    delivery = fired(f"http://127.0.0.1:{receiver.port}/hook", receiver.secret)
    await sending.queue(delivery)
    done = await sending.finished(delivery.delivery_id)
    assert (done.status, done.last_error) == (DeliveryStatus.FAILED, "refused: webhook URLs must use https")
    assert receiver.received == []


async def test_a_delivery_claimed_by_a_sender_that_died_is_claimed_again_after_its_lease(
    alert_store: SqliteAlertStore,
) -> None:
    delivery = fired("https://hooks.example.test/hook", new_secret())
    await alert_store.enqueue_delivery(delivery)
    now = time.time()
    (claimed,) = await alert_store.claim_due_deliveries(now, 30.0, 10)
    assert claimed.attempts == 1
    # Within the lease nobody else takes it; after it, it is due again, as attempt 2.
    assert await alert_store.claim_due_deliveries(now + 29.0, 30.0, 10) == []
    (again,) = await alert_store.claim_due_deliveries(now + 31.0, 30.0, 10)
    assert again.attempts == 2
    # The first claimant's late outcome is fenced off by the attempt number.
    late = replace(claimed, status=DeliveryStatus.DELIVERED, delivered_at=now + 32.0)
    assert not await alert_store.finish_attempt(late)
    assert await alert_store.finish_attempt(replace(again, status=DeliveryStatus.DELIVERED))


async def test_an_endpoint_slow_to_answer_does_not_hold_back_another_endpoints_delivery(
    tls: TlsMaterial, start_sender: StartSender
) -> None:
    slow, quick = (
        WebhookReceiver(tls, secret=new_secret(), hold_request=1),
        WebhookReceiver(tls, secret=new_secret()),
    )
    for receiver in (slow, quick):
        await receiver.start()
    try:
        sending = start_sender(LOOPBACK, SystemResolver())
        held = fired(slow.url, slow.secret)
        await sending.queue(held)
        await asyncio.wait_for(slow.holding.wait(), 10)
        # The slow endpoint has not answered (FAST gives it 2 s); the other is delivered meanwhile.
        other = fired(quick.url, quick.secret)
        await sending.queue(other)
        done = await sending.finished(other.delivery_id)
        assert done.status is DeliveryStatus.DELIVERED
        (still,) = [
            d
            for d in await sending.store.list_deliveries("a-1", None, 10)
            if d.delivery_id == held.delivery_id
        ]
        assert still.last_attempt_at is None, "the slow endpoint's attempt had already ended"
        slow.release.set()
    finally:
        for receiver in (slow, quick):
            await receiver.stop()
