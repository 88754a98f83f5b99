"""Sending queued deliveries as Standard Webhooks, retried with exponential backoff and jitter."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from ingest_service.alerts.domain import AlertDelivery, DeliveryStatus
from ingest_service.alerts.store import AlertStore
from ingest_service.alerts.targets import CheckedResolver, HostResolver, TargetPolicy, TargetRefused
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

USER_AGENT = "viewer-analytics-alerts/1"
# Of a failed response, this much of the body is kept as its error (a receiver's reason, not a page).
_ERROR_BODY_BYTES = 200


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How the sender attempts and retries (``ALERT_DELIVERY_*``).

    A failed attempt is retried after ``initial_backoff_seconds`` doubled per attempt up to
    ``max_backoff_seconds``, each delay drawn between its half and its whole (jitter, so that a
    receiver coming back is not hit by every queued delivery at once); the last attempt is made
    ``give_up_after_seconds`` after the delivery was created (25 h by default: at least a day of
    retries), after which it is FAILED. ``lease_seconds`` is how long a claimed attempt is this
    sender's: a sender killed mid-attempt leaves the delivery to be claimed again after it.
    """

    request_timeout_seconds: float = 10.0
    initial_backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0
    give_up_after_seconds: float = 90_000.0
    lease_seconds: float = 60.0
    poll_interval_seconds: float = 1.0
    # Attempts in flight at once.
    batch_size: int = 16


def backoff_seconds(attempts: int, settings: DeliverySettings, draw: Callable[[], float]) -> float:
    """The delay after the ``attempts``-th failed attempt: exponential, capped, with equal jitter.

    ``draw`` gives a number in [0, 1) (``random.random``).
    """
    ceiling: float = min(
        settings.max_backoff_seconds, settings.initial_backoff_seconds * 2.0 ** min(attempts - 1, 60)
    )
    return ceiling / 2 + ceiling / 2 * draw()


def signed_headers(delivery: AlertDelivery, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: the delivery's id, this attempt's time, its signature.

    The signature covers ``id.timestamp.body`` (signed by the ``standardwebhooks`` package), so each
    attempt is signed afresh with its own timestamp while the id stays the same.
    """
    moment = datetime.fromtimestamp(int(now), UTC)
    signature = Webhook(delivery.secret).sign(delivery.delivery_id, moment, delivery.payload)
    return {
        "webhook-id": delivery.delivery_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def client_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trusted CAs, plus ``ca_file`` when set (an internal CA; the tests' own)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How one attempt ended: ``retry`` False means there is no point trying again."""

    delivered: bool
    retry: bool
    error: str = ""
    status_code: int = 0


class WebhookSender:
    """Claims due deliveries from the store and attempts each; the store is the durable queue.

    Every attempt's outcome is written back before the next claim, so a restart resumes from the
    store: pending deliveries are sent, the one in flight when the process died is claimed again once
    its lease runs out (the receiver may then see its ``webhook-id`` twice; Standard Webhooks' id is
    what it de-duplicates on).
    """

    def __init__(
        self,
        store: AlertStore,
        policy: TargetPolicy,
        settings: DeliverySettings,
        *,
        clock: Callable[[], float],
        resolver: HostResolver,
        ssl_context: ssl.SSLContext,
        log: RateLimitedLog,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._policy = policy
        self._settings = settings
        self._clock = clock
        self._resolver = resolver
        self._ssl = ssl_context
        self._log = log
        self._draw = draw
        self._wake = asyncio.Event()
        # Attempts by the delivery's status after them (pending: tried again later), for /metrics.
        self.attempts: Counter[str] = Counter()

    def wake(self) -> None:
        """Makes the sender look for due deliveries now (a delivery was just queued)."""
        self._wake.set()

    async def run(self) -> None:
        """Sends until cancelled (supervised: a store failure restarts it with backoff)."""
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(self._policy, self._resolver),
            # Every new connection is resolved and checked again, never from a cache.
            use_dns_cache=False,
            ssl=self._ssl,
            limit=self._settings.batch_size,
        )
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout_seconds)
        # trust_env=False: no proxy from the environment, which would make the checked address moot.
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            # Each attempt is a task of its own, claimed as soon as a slot is free: an endpoint that
            # takes its whole timeout to answer holds one slot, not the deliveries behind it.
            in_flight: set[asyncio.Task[None]] = set()
            try:
                while True:
                    for task in [each for each in in_flight if each.done()]:
                        in_flight.discard(task)
                        # A store failure ends the loop; the supervisor restarts it with backoff.
                        task.result()
                    free = self._settings.batch_size - len(in_flight)
                    if free <= 0:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    self._wake.clear()
                    claimed = await self._store.claim_due_deliveries(
                        self._clock(), self._settings.lease_seconds, free
                    )
                    in_flight.update(asyncio.create_task(self._deliver(session, each)) for each in claimed)
                    if len(claimed) == free:
                        continue
                    waiting = [asyncio.create_task(self._wake.wait()), *in_flight]
                    try:
                        await asyncio.wait(
                            waiting,
                            timeout=self._settings.poll_interval_seconds,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        waiting[0].cancel()
            finally:
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _deliver(self, session: aiohttp.ClientSession, delivery: AlertDelivery) -> None:
        outcome = await self.attempt(session, delivery)
        now = self._clock()
        finished = replace(delivery, last_attempt_at=now, last_status_code=outcome.status_code)
        if outcome.delivered:
            finished = replace(finished, status=DeliveryStatus.DELIVERED, delivered_at=now, last_error="")
        else:
            horizon = delivery.created_at + self._settings.give_up_after_seconds
            if not outcome.retry or now >= horizon:
                finished = replace(finished, status=DeliveryStatus.FAILED, last_error=outcome.error)
            else:
                delay = backoff_seconds(delivery.attempts, self._settings, self._draw)
                finished = replace(
                    finished, last_error=outcome.error, next_attempt_at=min(now + delay, horizon)
                )
        self.attempts[finished.status.value] += 1
        recorded = await self._store.finish_attempt(finished)
        logger.info(
            "Alert delivery attempt",
            extra={
                "delivery_id": delivery.delivery_id,
                "rule_id": delivery.rule_id,
                "auction_id": delivery.auction_id,
                "attempt": delivery.attempts,
                "status": finished.status.value,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "recorded": recorded,
            },
        )

    async def attempt(self, session: aiohttp.ClientSession, delivery: AlertDelivery) -> AttemptOutcome:
        """One POST of the delivery; never raises for what the endpoint or the network does."""
        try:
            self._policy.check_url(delivery.webhook_url)
        except TargetRefused as refused:
            return AttemptOutcome(False, False, f"refused: {refused}")
        headers = signed_headers(delivery, self._clock())
        try:
            async with session.post(
                delivery.webhook_url, data=delivery.payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return AttemptOutcome(True, False, status_code=response.status)
                if 300 <= response.status < 400:
                    # Not followed: the next hop could be any address, and checking each hop would be
                    # a second policy to keep right. The receiver must answer at the URL it gave.
                    location = response.headers.get("Location", "")
                    return AttemptOutcome(
                        False,
                        False,
                        f"redirect {response.status} to {location[:200]!r} not followed",
                        response.status,
                    )
                body = (await response.content.read(_ERROR_BODY_BYTES)).decode(errors="replace")
                return AttemptOutcome(False, True, f"HTTP {response.status}: {body}".strip(), response.status)
        except TargetRefused as refused:
            return AttemptOutcome(False, False, f"refused: {refused}")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self._log.warning(
                f"webhook_unreachable:{type(error).__name__}",
                "Webhook endpoint unreachable",
                extra={"delivery_id": delivery.delivery_id, "error": repr(error)},
            )
            return AttemptOutcome(False, True, f"{type(error).__name__}: {error}"[:300])
