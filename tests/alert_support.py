"""Helpers for the alert tests: a real HTTPS webhook receiver on loopback that verifies signatures with
the ``standardwebhooks`` package, and a resolver the tests control (the DNS boundary, faked)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import trustme
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from viewer_analytics.v1 import alert_rule_service_pb2_grpc as alerts_grpc

from ingest_service.alerts.config import AlertSettings
from ingest_service.alerts.sender import DeliverySettings
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.alerts.targets import TargetPolicy, TargetRefused
from ingest_service.server import IngestServer, create_ingest_server
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.internal_auth import internal_key_metadata
from tests.conftest import ingest_config
from tests.support import TEST_KEY

LOOPBACK = TargetPolicy.parse(["127.0.0.0/8"])
# Retries in tens of milliseconds, so "down for minutes" (dozens of attempts) takes a second or two.
FAST = DeliverySettings(
    request_timeout_seconds=2.0,
    initial_backoff_seconds=0.02,
    max_backoff_seconds=0.1,
    lease_seconds=5.0,
    poll_interval_seconds=0.02,
)

# The names the receiver's certificate covers: the loopback address and a name only FakeResolver knows.
RECEIVER_NAMES = ("127.0.0.1", "hooks.example.test")


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    webhook_id: str
    timestamp: str
    body: bytes
    answered: int
    verified: bool
    payload: Any = None


@dataclass
class TlsMaterial:
    """A throwaway CA and the receiver's certificate, as files (the CA for ALERT_WEBHOOK_CA_FILE)."""

    ca_file: Path
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext

    @classmethod
    def make(cls, directory: Path) -> TlsMaterial:
        ca = trustme.CA()
        certificate = ca.issue_cert(*RECEIVER_NAMES)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(server)
        client = ssl.create_default_context()
        ca.configure_trust(client)
        ca_file = directory / "webhook-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(ca_file, server, client)


@dataclass
class WebhookReceiver:
    """An HTTPS endpoint on 127.0.0.1: answers each request with the next of ``answers`` (then 200),
    records it, and verifies its signature with ``secret`` through the standardwebhooks package.

    ``stop`` closes the port (the receiver is down: connections are refused); ``start`` listens on
    the same port again.
    """

    tls: TlsMaterial
    secret: str = ""
    answers: list[int] = field(default_factory=list)
    redirect_to: str = ""
    # The request of this number (1 for the first) is held, unanswered, until ``release`` is set.
    hold_request: int = 0
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hook"

    def url_at(self, host: str) -> str:
        return f"https://{host}:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls.server_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests += 1
        if self.requests == self.hold_request:
            self.holding.set()
            await self.release.wait()
        headers = {key: value for key, value in request.headers.items()}
        payload: Any = None
        verified = False
        if self.secret:
            try:
                payload = Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                pass
        status = self.answers.pop(0) if self.answers else 200
        if self.redirect_to and request.path == "/hook":
            status = 307
        async with self._changed:
            self.received.append(
                Received(
                    request.path,
                    request.headers.get("webhook-id", ""),
                    request.headers.get("webhook-timestamp", ""),
                    body,
                    status,
                    verified,
                    payload,
                )
            )
            self._changed.notify_all()
        if status == 307:
            return web.Response(status=307, headers={"Location": self.redirect_to})
        return web.Response(status=status, text=json.dumps({"status": status}))

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Waits until ``count`` requests have arrived (at most ``within`` seconds); returns all of them."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.received) >= count), within)
        return list(self.received)


class FakeResolver:
    """The DNS boundary, faked: answers the addresses a test gives for each name (no network here
    could serve a name that resolves to a private address on demand). Unknown names fail to resolve."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.names:
            raise TargetRefused(f"cannot resolve {host!r}")
        return list(self.names[host])


@dataclass
class AlertingIngest:
    """The ingest service in this process on SQLite with its alert store and sender, and a channel."""

    server: IngestServer
    alerts: SqliteAlertStore
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stub(self) -> alerts_grpc.AlertRuleServiceStub:
        return alerts_grpc.AlertRuleServiceStub(self.channel)


@asynccontextmanager
async def alerting_ingest(
    directory: Path,
    tls: TlsMaterial,
    *,
    clock: Callable[[], float] = time.time,
    store_class: type[SqliteAlertStore] = SqliteAlertStore,
) -> AsyncIterator[AlertingIngest]:
    """Serves on a free loopback port; webhooks may reach loopback and trust the tests' CA.

    Args:
        clock: the service's clock (rules' times, the listings of changes).
        store_class: the alert store (a test's subclass observes what is read).
    """
    config = ingest_config(
        sqlite_path=str(directory / "analytics.sqlite3"),
        alerts=AlertSettings(policy=LOOPBACK, ca_file=str(tls.ca_file), delivery=FAST),
    )
    store = await SqliteSnapshotStore.open(config.sqlite_path, retention_days=90, clock=clock)
    alerts = await store_class.open(store, retention_days=90, clock=clock)
    server = create_ingest_server(config, store, clock, alert_store=alerts)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield AlertingIngest(server, alerts, channel, tuple(internal_key_metadata(TEST_KEY)))
    finally:
        await channel.close()
        await server.stop(0)
        await alerts.close()
        await store.close()
