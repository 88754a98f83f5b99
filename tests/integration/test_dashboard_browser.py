"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

The three services run in this process on free loopback ports, on the real clock with the "minute"
shortened to 2 s (sampled every second) for the gateway and the ingest service alike. The seed's
checklist, in the page: open the live view -> 1 watching; a second tab -> 2 watching; close one ->
1 watching; turn analytics on; after a minute the chart shows a point and the summary matches the
stored snapshots. A screenshot is written to test-artifacts/dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from graphql_api.app import create_app
from ingest_service.domain import AnalyticsRange
from ingest_service.server import IngestServer, create_ingest_server
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.timing import SnapshotTiming
from tests.conftest import ingest_config
from tests.gateway_support import gateway_config, running_gateway, stored_snapshots
from tests.graphql_support import admin_token, graphql_config

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# The flags these machines need (shared/README.md): no sandbox as root, no GPU, nothing fetched.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMING = SnapshotTiming(2, 1)
# Bounds every wait on the page: a broken test fails after this, a working one never waits it out.
PAGE_WAIT_MS = 10_000
AUCTION = "auction-browser"
NO_VALUE = "\N{EN DASH}"  # what the page shows where it has no number


@dataclass
class Stack:
    ingest: IngestServer
    store: SqliteSnapshotStore
    sqlite_path: str
    dashboard_url: str


@asynccontextmanager
async def running_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Ingest service, socket gateway and GraphQL API (which serves the page) on free loopback ports."""
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), timing=TIMING)
    store = await SqliteSnapshotStore.open(config.sqlite_path, retention_days=config.retention_days)
    ingest = create_ingest_server(config, store)
    await ingest.start()
    ingest_target = f"127.0.0.1:{ingest.port}"
    # The page's origin must be known before the gateway starts (its CORS list) and the gateway's URL
    # before the API starts (the page's config): the API's socket is bound first, on port 0.
    api_socket = socket.socket()
    api_socket.bind(("127.0.0.1", 0))
    page_origin = f"http://127.0.0.1:{api_socket.getsockname()[1]}"
    gateway_settings = gateway_config(
        tmp_path, ingest_target=ingest_target, timing=TIMING, allowed_origins=(page_origin,)
    )
    try:
        async with running_gateway(gateway_settings) as gateway:
            api = graphql_config(
                ingest_target,
                allowed_origins=(page_origin,),
                dashboard_gateway_url=gateway.url,
                ingest_timeout_seconds=1.0,
                timing=TIMING,
            )
            runner = web.AppRunner(create_app(api), shutdown_timeout=1.0)
            await runner.setup()
            try:
                await web.SockSite(runner, api_socket).start()
                yield Stack(ingest, store, config.sqlite_path, f"{page_origin}/dashboard/")
            finally:
                await runner.cleanup()
    finally:
        api_socket.close()
        await ingest.stop(0)
        await store.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def data_value(page: Page, selector: str) -> str:
    value = await page.locator(selector).get_attribute("data-value")
    assert value is not None, f"{selector} has no data-value"
    return value


async def wait_for_stored(store: SqliteSnapshotStore, auction_id: str) -> None:
    """Waits until the ingest service has stored a snapshot of the auction.

    The snapshot crosses the gateway's outbox and a gRPC stream into the store: no event reaches
    this test, so it polls the store, bounded by a deadline.
    """
    deadline = time.monotonic() + PAGE_WAIT_MS / 1000
    while (await store.query_totals(AnalyticsRange(auction_id, None, None))).snapshot_count == 0:
        assert time.monotonic() < deadline, "no snapshot was stored"
        await asyncio.sleep(0.1)


def expected_summary(snapshots: list[dict[str, Any]]) -> tuple[int, float, float]:
    """Overall peak, sample-weighted average and duration in minutes, computed by hand."""
    peak = max(snapshot["peak_viewers"] for snapshot in snapshots)
    samples = sum(snapshot["sample_count"] for snapshot in snapshots)
    average = sum(snapshot["avg_viewers"] * snapshot["sample_count"] for snapshot in snapshots) / samples
    span = snapshots[-1]["minute_start"] + TIMING.snapshot_interval_seconds - snapshots[0]["minute_start"]
    return peak, average, span / 60


async def test_live_counts_settings_chart_summary_and_csv_in_a_real_browser(tmp_path: Path) -> None:
    expect.set_options(timeout=PAGE_WAIT_MS)
    async with running_stack(tmp_path) as stack, chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page_errors: list[str] = []
        url = f"{stack.dashboard_url}#token={admin_token()}&auction={AUCTION}"

        first = await context.new_page()
        first.on("pageerror", lambda error: page_errors.append(str(error)))
        await first.goto(url)
        # The token left the address bar once the page had it.
        await expect(first).to_have_url(stack.dashboard_url)
        await expect(first.locator("#live-count")).to_have_text("1 watching")
        await expect(first.locator("#live-unique")).to_have_text("1 unique viewer")

        # A second tab of the same browser: two connections, one viewer.
        second = await context.new_page()
        await second.goto(url)
        await expect(second.locator("#live-count")).to_have_text("2 watching")
        await expect(first.locator("#live-count")).to_have_text("2 watching")
        await expect(first.locator("#live-unique")).to_have_text("1 unique viewer")
        await second.close()
        await expect(first.locator("#live-count")).to_have_text("1 watching")

        # The settings text states this deployment's timing (a 2 s "minute" sampled every second).
        await expect(first.locator("#settings .explain")).to_contain_text(
            "sampled every second, aggregated every 2 seconds, and stored for 90 days"
        )

        # Analytics are off: said in a sentence, not shown as an empty chart alone.
        toggle = first.locator("#analytics-toggle")
        await expect(toggle).to_be_enabled()
        await expect(toggle).not_to_be_checked()
        await expect(first.locator("#analytics-message")).to_contain_text("Analytics are off for this")
        await toggle.check()
        await expect(first.locator("#settings-message")).to_contain_text("Recording since")

        await wait_for_stored(stack.store, AUCTION)
        await first.locator("#refresh").click()
        peak_points = first.locator("#chart circle.point.peak")
        await expect(peak_points.first).to_be_visible()
        await expect(first.locator("#analytics-message")).to_have_text("")

        # The page's summary is the stored snapshots' (the first N, N as the page shows: more may
        # have arrived since its query).
        shown_count = int(await data_value(first, "#summary-count"))
        stored = stored_snapshots(stack.sqlite_path, AUCTION)
        assert 1 <= shown_count <= len(stored)
        peak, average, duration = expected_summary(stored[:shown_count])
        assert int(await data_value(first, "#summary-peak")) == peak
        assert float(await data_value(first, "#summary-avg")) == pytest.approx(average)
        assert float(await data_value(first, "#summary-duration")) == pytest.approx(duration)
        await expect(first.locator("#summary-peak")).to_have_text(str(peak))
        point_peaks = [
            float(value or "nan")
            for value in await peak_points.evaluate_all(
                "points => points.map(p => p.getAttribute('data-value'))"
            )
        ]
        assert max(point_peaks) == peak
        assert peak >= 1, "the page itself was watching while analytics were on"

        ARTIFACTS.mkdir(exist_ok=True)
        await first.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # The CSV download: the export, fetched with the token, saved by the browser.
        async with first.expect_download() as download_info:
            await first.locator("#download-csv").click()
        download = await download_info.value
        saved = await download.path()
        with open(saved, encoding="utf-8") as csv_file:  # noqa: ASYNC230 (a small local file)
            rows = csv_file.read().splitlines()
        assert rows[0] == "auction_id,at_utc,avg_viewers,peak_viewers,min_viewers,viewer_count,samples"
        assert len(rows) >= 2

        # A token the API refuses, in another tab: a sentence, and the toggle stays disabled.
        intruder = await context.new_page()
        await intruder.goto(f"{stack.dashboard_url}#token=not-a-token&auction=auction-elsewhere")
        await expect(intruder.locator("#analytics-message")).to_contain_text("Your token was not accepted")
        await expect(intruder.locator("#analytics-toggle")).to_be_disabled()
        # The live count needs no token.
        await expect(intruder.locator("#live-count")).to_have_text("1 watching")

        # The ingest service goes away: the page says so instead of drawing nothing.
        await stack.ingest.stop(0)
        await first.locator("#refresh").click()
        await expect(first.locator("#analytics-message")).to_contain_text("temporarily unavailable")
        await expect(first.locator("#summary-peak")).to_have_text(NO_VALUE)

        # Another auction, chosen in the form: the live view moves to its room, where the other tab is.
        await first.locator("#auction-id").fill("auction-elsewhere")
        await first.locator("#auction-form button").click()
        await expect(first.locator("#live-status")).to_contain_text("auction-elsewhere")
        await expect(first.locator("#live-count")).to_have_text("2 watching")
        await expect(intruder.locator("#live-count")).to_have_text("2 watching")
        await intruder.close()

        assert page_errors == []
        await context.close()
