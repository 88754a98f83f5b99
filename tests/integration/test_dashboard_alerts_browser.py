"""The dashboard's alert deliveries in headless Chromium: the auction's deliveries as the ingest service
logged them (one delivered to a real HTTPS receiver, one failed on a redirect), each cell text, so a
receiver's answer in the last error is never markup. Screenshot: tmp/artifacts/dashboard/alerts.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2

from ingest_service.alerts.domain import DeliveryStatus
from testkit.waiting import poll
from tests.alert_support import AlertingIngest, TlsMaterial, WebhookReceiver, alerting_ingest
from tests.graphql_support import admin_token, graphql_config, running_graphql
from tests.integration.test_dashboard_browser import ARTIFACTS, PAGE_WAIT_MS, chromium

AUCTION = "auction-alerts"
HOSTILE = "<img src=x onerror=window.pwned=1>"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=PAGE_WAIT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with chromium() as launched:
        yield launched


async def send_test(ingest: AlertingIngest, receiver: WebhookReceiver) -> str:
    stub = ingest.stub()
    created = await stub.CreateAlertRule(
        alerts_pb2.CreateAlertRuleRequest(
            auction_id=AUCTION,
            spec=alerts_pb2.AlertRuleSpec(
                kind=alerts_pb2.ALERT_KIND_ABOVE,
                metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
                threshold=100,
                webhook_url=receiver.url,
            ),
        ),
        metadata=ingest.metadata,
    )
    receiver.secret = created.secret
    sent = await stub.SendTestAlertDelivery(
        alerts_pb2.SendTestAlertDeliveryRequest(auction_id=AUCTION, rule_id=created.rule.rule_id),
        metadata=ingest.metadata,
    )
    return str(sent.delivery.delivery_id)


async def test_the_dashboard_lists_the_auctions_deliveries_as_text(tmp_path: Path, browser: Browser) -> None:
    tls = TlsMaterial.make(tmp_path)
    good, redirecting = WebhookReceiver(tls), WebhookReceiver(tls)
    for receiver in (good, redirecting):
        await receiver.start()
    redirecting.redirect_to = HOSTILE
    try:
        async with (
            alerting_ingest(tmp_path, tls) as ingest,
            running_graphql(graphql_config(ingest.target)) as api,
        ):
            delivered = await send_test(ingest, good)
            failed = await send_test(ingest, redirecting)

            async def finished() -> bool:
                log = await ingest.alerts.list_deliveries(AUCTION, None, 10)
                return all(each.status is not DeliveryStatus.PENDING for each in log)

            await poll(finished, "both deliveries finished", within=10, every=0.02)

            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto(f"{api.base_url}/dashboard/#token={admin_token()}&auction={AUCTION}")
            rows = page.locator("#alert-deliveries tbody tr")
            await expect(rows).to_have_count(2)
            # Newest first: the failed one was queued last.
            assert await rows.nth(0).get_attribute("data-id") == failed
            assert await rows.nth(1).get_attribute("data-id") == delivered
            await expect(rows.nth(0).locator("td").nth(2)).to_have_text("failed")
            await expect(rows.nth(0).locator("td").nth(4)).to_have_text(
                f"redirect 307 to {HOSTILE!r} not followed"
            )
            await expect(rows.nth(1).locator("td").nth(1)).to_have_text("test")
            await expect(rows.nth(1).locator("td").nth(2)).to_have_text("delivered")
            await expect(rows.nth(1).locator("td").nth(3)).to_have_text("1")
            assert await page.locator("#alert-deliveries img").count() == 0
            assert await page.evaluate("window.pwned === undefined")
            await page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)

            # Another auction (nothing sent) says so instead of showing the previous one's rows.
            await page.fill("#auction-id", "auction-quiet")
            await page.click("#auction-form button[type=submit]")
            await expect(rows).to_have_count(0)
            await expect(page.locator("#alerts-message")).to_have_text(
                "No alert has been sent for this auction yet."
            )
            await context.close()
    finally:
        for receiver in (good, redirecting):
            await receiver.stop()
