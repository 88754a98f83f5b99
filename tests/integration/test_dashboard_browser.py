"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

The three services run in this process on free loopback ports, on the real clock with the "minute"
shortened to 2 s (sampled every second) for the gateway and the ingest service alike; one stack and
one browser serve the whole module. The browser's clock is in Europe/Berlin, so local time and UTC
differ. The page is an observer: it is never counted (issue 19), so the viewers are real
python-socketio clients of the gateway, as the auction's own page would be. The seed's checklist,
seen in the page: a viewer opens the live view -> 1 watching; a second tab -> 2 watching; close one
-> 1 watching; turn analytics on; after a "minute" the chart shows a point and the summary matches
the stored snapshots. Then the states of issue 19, at 1280 and 390 px: axes with
units and the zone, round local ticks, tiles that agree, a dash where there is no number, the seller's
auction list, a chart at the phone's width with touch tooltips, unknown shown as unknown, and an
outage that keeps the last good data marked stale. Screenshots go to tmp/artifacts/dashboard/.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from graphql_api.app import create_app
from ingest_service.domain import AnalyticsRange
from ingest_service.server import IngestServer
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.timing import SnapshotTiming
from testkit.waiting import poll
from tests.conftest import ingest_config, sqlite_ingest
from tests.gateway_support import RunningGateway, gateway_config, running_gateway, stored_snapshots
from tests.graphql_support import admin_token, graphql_config, seller_token

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tmp" / "artifacts" / "dashboard"
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
PHONE_AUCTION = "auction-phone"
NO_VALUE = "\N{EN DASH}"  # what the page shows where it has no number
ZONE = "Europe/Berlin"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# The tick steps the page may use (dashboard.js TIME_STEPS), in ms.
ROUND_STEPS_MS = {
    s * 1000
    for s in (
        1,
        2,
        5,
        10,
        15,
        30,
        60,
        120,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        10800,
        21600,
        43200,
        86400,
        172800,
        604800,
    )
}


@dataclass
class Stack:
    ingest: IngestServer
    store: SqliteSnapshotStore
    sqlite_path: str
    dashboard_url: str
    api_url: str
    gateway: RunningGateway

    def members(self, auction_id: str) -> int:
        """Sockets the gateway counts in the auction's room."""
        return self.gateway.gateway.registry.counts(auction_id).viewer_count


@asynccontextmanager
async def running_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Ingest service, socket gateway and GraphQL API (which serves the page) on free loopback ports."""
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), timing=TIMING)
    async with sqlite_ingest(config) as (ingest, store):
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
                    # The page's live count: the API's subscription, fed by the gateway's stream.
                    gateway_grpc_target=gateway.grpc_target,
                    ingest_timeout_seconds=1.0,
                    timing=TIMING,
                )
                runner = web.AppRunner(create_app(api), shutdown_timeout=1.0)
                await runner.setup()
                try:
                    await web.SockSite(runner, api_socket).start()
                    yield Stack(
                        ingest, store, config.sqlite_path, f"{page_origin}/dashboard/", page_origin, gateway
                    )
                finally:
                    await runner.cleanup()
        finally:
            api_socket.close()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, through Playwright (also used by the GraphiQL browser test)."""
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=PAGE_WAIT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with chromium() as launched:
        yield launched


async def new_context(browser: Browser, *, phone: bool = False) -> BrowserContext:
    if phone:
        return await browser.new_context(
            viewport=PHONE,
            is_mobile=True,
            has_touch=True,
            device_scale_factor=2,
            timezone_id=ZONE,
            locale="en-GB",
        )
    return await browser.new_context(
        viewport=DESKTOP, accept_downloads=True, timezone_id=ZONE, locale="en-GB"
    )


def dashboard(stack: Stack, token: str, auction: str) -> str:
    return f"{stack.dashboard_url}#token={token}&auction={auction}"


async def data_value(page: Page, selector: str) -> str:
    value = await page.locator(selector).get_attribute("data-value")
    assert value is not None, f"{selector} has no data-value"
    return value


async def wait_for_stored(store: SqliteSnapshotStore, auction_id: str) -> None:
    """Waits until the ingest service has stored a snapshot of the auction.

    The snapshot crosses the gateway's outbox and a gRPC stream into the store: no event reaches
    this test, so it polls the store, bounded by a deadline.
    """

    async def stored() -> bool:
        return (await store.query_totals(AnalyticsRange(auction_id, None, None))).snapshot_count > 0

    await poll(stored, "a stored snapshot", within=PAGE_WAIT_MS / 1000, every=0.1)


async def enable_analytics(stack: Stack, auction_id: str) -> None:
    """Turns analytics on through the API's mutation, as the page's toggle does."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.api_url}/graphql",
            json={"query": SET_ANALYTICS, "variables": {"id": auction_id}},
            headers={"Authorization": f"Bearer {admin_token()}"},
        ) as response,
    ):
        assert (await response.json())["data"]["setViewerAnalytics"][
            "__typename"
        ] == "ViewerAnalyticsSettings"


SET_ANALYTICS = "mutation On($id: ID!) { setViewerAnalytics(auctionId: $id, enabled: true) { __typename } }"


def expected_summary(snapshots: list[dict[str, Any]]) -> tuple[int, float, float]:
    """Overall peak, sample-weighted average and duration in minutes, computed by hand."""
    peak = max(snapshot["peak_viewers"] for snapshot in snapshots)
    samples = sum(snapshot["sample_count"] for snapshot in snapshots)
    average = sum(snapshot["avg_viewers"] * snapshot["sample_count"] for snapshot in snapshots) / samples
    span = snapshots[-1]["minute_start"] + TIMING.snapshot_interval_seconds - snapshots[0]["minute_start"]
    return peak, average, span / 60


async def expect_unknown_toggle(page: Page) -> None:
    """The analytics switch says its state is not known: neither checked nor "off"."""
    toggle = page.locator("#analytics-toggle")
    await expect(toggle).to_have_attribute("data-state", "unknown")
    await expect(toggle).to_be_disabled()
    assert await toggle.evaluate("box => box.indeterminate") is True
    await expect(page.locator("#toggle-state")).to_have_text("unknown")


async def axis_ticks(page: Page) -> list[tuple[int, str]]:
    ticks = await page.locator("#chart text.x-tick").evaluate_all(
        "ticks => ticks.map(t => [Number(t.getAttribute('data-t')), t.textContent])"
    )
    return [(int(t), label) for t, label in ticks]


def assert_round_local_ticks(ticks: list[tuple[int, str]]) -> None:
    """Ticks a round step apart, on the step in Berlin's local time, labelled with that local time."""
    assert len(ticks) >= 2, ticks
    step = ticks[1][0] - ticks[0][0]
    assert step in ROUND_STEPS_MS, f"a tick step of {step} ms is not round"
    zone = ZoneInfo(ZONE)
    for t, label in ticks:
        local = datetime.fromtimestamp(t / 1000, zone)
        offset_ms = int(local.utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        assert (t + offset_ms) % step == 0, f"{label} is not on a round local {step} ms"
        if step < 86_400_000:
            assert local.strftime("%H:%M") in label, (label, local)


async def test_checklist_axes_tiles_and_csv_at_1280(stack: Stack, browser: Browser) -> None:
    context = await new_context(browser)
    page_errors: list[str] = []
    url = dashboard(stack, admin_token(), AUCTION)

    first = await context.new_page()
    first.on("pageerror", lambda error: page_errors.append(str(error)))
    await first.goto(url)
    # The token left the address bar once the page had it.
    await expect(first).to_have_url(stack.dashboard_url)
    await expect(first.locator("#signed-in")).to_have_text("Signed in as admin-1 (admin: every auction).")
    # The seller's own page watches without being counted (it counted itself, and stored it).
    await expect(first.locator("#live-count")).to_have_text("0 watching")
    await expect(first.locator("#live-status")).to_contain_text("this page is not counted")
    assert stack.members(AUCTION) == 0

    # A viewer opens the auction's live view.
    viewer = await stack.gateway.viewer({"auctionId": AUCTION, "viewerId": "buyer-1"})
    await expect(first.locator("#live-count")).to_have_text("1 watching")
    await expect(first.locator("#live-unique")).to_have_text("1 unique viewer")

    # A second tab of the same viewer: two connections, one viewer; a second dashboard tab adds none.
    second_tab = await stack.gateway.viewer({"auctionId": AUCTION, "viewerId": "buyer-1"})
    second = await context.new_page()
    await second.goto(url)
    await expect(second.locator("#live-count")).to_have_text("2 watching")
    await expect(first.locator("#live-count")).to_have_text("2 watching")
    await expect(first.locator("#live-unique")).to_have_text("1 unique viewer")
    assert stack.members(AUCTION) == 2
    await second.close()
    await second_tab.disconnect()
    await expect(first.locator("#live-count")).to_have_text("1 watching")
    # The strip under the live number has what this page saw live.
    assert int(await first.locator("#live-strip").get_attribute("data-samples") or "0") >= 3

    # The settings text states this deployment's timing (a 2 s "minute" sampled every second).
    await expect(first.locator("#settings .explain")).to_contain_text(
        "sampled every second, aggregated every 2 seconds, and stored for 90 days"
    )

    # Analytics are off: said in a sentence, and no number where nothing was recorded (it said 0).
    toggle = first.locator("#analytics-toggle")
    await expect(toggle).to_be_enabled()
    await expect(toggle).to_have_attribute("data-state", "off")
    await expect(first.locator("#analytics-message")).to_contain_text("Analytics are off for this")
    for tile in ("#summary-peak", "#summary-avg", "#summary-duration", "#summary-recorded"):
        await expect(first.locator(tile)).to_have_text(NO_VALUE)
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
        for value in await peak_points.evaluate_all("points => points.map(p => p.getAttribute('data-value'))")
    ]
    assert max(point_peaks) == peak
    assert peak >= 1, "the viewer was watching while analytics were on"

    # Tiles that agree: what was recorded is snapshots x the 2 s interval (it said "N minutes
    # recorded" of 2 s snapshots), never more than the duration, written the same way.
    recorded = float(await data_value(first, "#summary-recorded"))
    assert recorded == shown_count * TIMING.snapshot_interval_seconds
    assert recorded <= duration * 60 + 1e-9
    await expect(first.locator("#summary-recorded")).to_have_text(f"{int(recorded)} s")
    await expect(first.locator("#summary-count")).to_contain_text("of 2 s")

    # Axes: units and the zone; the zone said once more beside the CSV's UTC.
    await expect(first.locator("#chart .y-title")).to_have_text("viewers")
    await expect(first.locator("#chart .x-title")).to_have_text("time (local: Europe/Berlin, UTC+01:00)")
    await expect(first.locator("#time-zone")).to_have_text(
        "Chart times are local (Europe/Berlin, UTC+01:00); the CSV is in UTC."
    )
    await expect(first.locator("#download-csv")).to_have_text("Download CSV (UTC)")
    assert_round_local_ticks(await axis_ticks(first))

    # The last hour of an auction recorded for seconds starts a bucket before its data, not an hour
    # ago (the points were a speck at the right end of the axis).
    chart = first.locator("#chart")
    hour_bucket_ms = int(await chart.get_attribute("data-bucket-seconds") or "0") * 1000
    first_bucket = await peak_points.first.get_attribute("data-at")
    assert first_bucket is not None
    first_bucket_ms = int(datetime.fromisoformat(first_bucket).timestamp() * 1000)
    assert int(await chart.get_attribute("data-start") or "0") == first_bucket_ms - hour_bucket_ms

    # "All": fitted to the data (it spanned at least an hour), at the configured 2 s buckets.
    await first.locator("#range").select_option("ALL")
    await expect(chart).to_have_attribute("data-bucket-seconds", "2")
    first_at = await peak_points.first.get_attribute("data-at")
    assert first_at is not None
    assert int(await chart.get_attribute("data-start") or "0") == int(
        datetime.fromisoformat(first_at).timestamp() * 1000
    )
    span_ms = int(await chart.get_attribute("data-end") or "0") - int(
        await chart.get_attribute("data-start") or "0"
    )
    assert span_ms < 60_000, "All is fitted to the few seconds recorded"
    assert_round_local_ticks(await axis_ticks(first))
    await first.screenshot(path=str(ARTIFACTS / "desktop-1280.png"), full_page=True)

    # The CSV: the auction, the range and the day in its name; auction id and UTC in its header.
    async with first.expect_download() as download_info:
        await first.locator("#download-csv").click()
    download = await download_info.value
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert download.suggested_filename == f"viewer-analytics-{AUCTION}-all-{today}.csv"
    saved = await download.path()
    with open(saved, encoding="utf-8") as csv_file:  # noqa: ASYNC230 (a small local file)
        rows = csv_file.read().splitlines()
    assert rows[0] == (
        "auction_id,at_utc,avg_viewers,peak_viewers,min_viewers,viewer_count,samples,unique_viewers"
    )
    assert len(rows) >= 2
    assert rows[1].startswith(f"{AUCTION},")
    assert rows[1].split(",")[1].endswith("Z")

    # An auction id the API refuses: nothing of the previous auction stays (its "Recording since").
    await first.locator("#auction-id").fill("not an id!")
    await first.locator("#auction-form button").click()
    await expect(first.locator("#analytics-message")).to_contain_text("The request was refused")
    await expect(first.locator("#settings-message")).to_have_text("")
    await expect_unknown_toggle(first)
    await expect(first.locator("#summary-peak")).to_have_text(NO_VALUE)
    await expect(first.locator("#chart circle.point")).to_have_count(0)

    assert page_errors == []
    await context.close()
    await viewer.disconnect()


async def test_phone_seller_list_and_unknown_states_at_390(stack: Stack, browser: Browser) -> None:
    await enable_analytics(stack, PHONE_AUCTION)
    context = await new_context(browser, phone=True)
    page_errors: list[str] = []
    page = await context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    # A seller: picks from the auctions the token covers, sorted, instead of typing an id.
    await page.goto(dashboard(stack, seller_token(PHONE_AUCTION, "auction-zzz"), PHONE_AUCTION))
    await expect(page.locator("#signed-in")).to_have_text("Signed in as seller-1 (seller: 2 auctions).")
    select = page.locator("#auction-select")
    await expect(select).to_be_visible()
    await expect(page.locator("#auction-id")).to_be_hidden()
    assert await select.locator("option").all_inner_texts() == [PHONE_AUCTION, "auction-zzz"]
    await expect(page.locator("#live-count")).to_have_text("0 watching")
    viewer = await stack.gateway.viewer({"auctionId": PHONE_AUCTION})
    await expect(page.locator("#live-count")).to_have_text("1 watching")

    await wait_for_stored(stack.store, PHONE_AUCTION)
    await page.locator("#refresh").tap()
    point = page.locator("#chart circle.point.peak").first
    await expect(point).to_be_visible()

    # Readable: nothing wider than the phone, the chart as wide as its container, text at size.
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    svg_width, plot_width = await page.evaluate(
        "[document.querySelector('#chart svg').getBoundingClientRect().width,"
        " document.querySelector('#chart').clientWidth]"
    )
    assert svg_width == pytest.approx(plot_width, abs=1)
    assert svg_width >= 300
    # Every time label at least 11 px tall, waited for: a refresh may be redrawing the chart just then.
    heights = (
        "[...document.querySelectorAll('#chart text.x-tick')].map(t => t.getBoundingClientRect().height)"
    )
    try:
        await page.wait_for_function(
            f"() => {{ const h = {heights}; return h.length > 0 && Math.min(...h) >= 11; }}"
        )
    except PlaywrightTimeoutError:
        raise AssertionError(f"axis labels {await page.evaluate(heights)} px tall") from None
    assert_round_local_ticks(await axis_ticks(page))

    # A finger on the chart brings the tooltip of the point under it.
    await point.scroll_into_view_if_needed()
    box = await point.bounding_box()
    assert box is not None
    await page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = page.locator("#chart-tooltip")
    await expect(tooltip).to_be_visible()
    await expect(tooltip).to_contain_text("peak ")
    await expect(tooltip).to_contain_text("viewers")
    await page.screenshot(path=str(ARTIFACTS / "phone-390.png"), full_page=True)

    # The other auction of the list: the live count follows it, nothing of this one stays.
    await select.select_option("auction-zzz")
    await expect(page.locator("#live-status")).to_contain_text("auction-zzz")
    await expect(page.locator("#live-count")).to_have_text("0 watching")
    await expect(page.locator("#analytics-toggle")).to_have_attribute("data-state", "off")
    await expect(page.locator("#summary-peak")).to_have_text(NO_VALUE)
    await expect(page.locator("#settings-message")).to_have_text("Not recording.")

    # Another seller's auction, opened by a link: the switch is unknown, not "off".
    foreign = await context.new_page()
    await foreign.goto(dashboard(stack, seller_token(PHONE_AUCTION), "auction-of-another-seller"))
    await expect(foreign.locator("#analytics-message")).to_contain_text("Your token does not give access")
    await expect_unknown_toggle(foreign)
    await expect(foreign.locator("#auction-select")).to_have_value("auction-of-another-seller")
    await expect(foreign.locator("#auction-select option").first).to_have_text(
        "auction-of-another-seller (not covered by your token)"
    )
    await foreign.close()

    # A token the API refuses: the same, and "signed in as" says so.
    refused = await context.new_page()
    await refused.goto(dashboard(stack, "not-a-token", "auction-elsewhere"))
    await expect(refused.locator("#analytics-message")).to_contain_text("Your token was not accepted")
    await expect(refused.locator("#signed-in")).to_have_text("Not signed in: the token was not accepted.")
    await expect_unknown_toggle(refused)
    # Nor does the live count: it comes through the API, with the same token.
    await expect(refused.locator("#live-status")).to_contain_text("your token was not accepted")
    await expect(refused.locator("#live-count")).to_have_text(f"{NO_VALUE} watching")
    await refused.screenshot(path=str(ARTIFACTS / "phone-390-refused-token.png"), full_page=True)

    assert page_errors == []
    await context.close()
    await viewer.disconnect()


async def test_an_outage_keeps_the_last_good_data_marked_stale(stack: Stack, browser: Browser) -> None:
    """Last in the module: it stops the ingest service."""
    desktop = await new_context(browser)
    phone = await new_context(browser, phone=True)
    await enable_analytics(stack, AUCTION)
    pages = [await desktop.new_page(), await phone.new_page()]
    for page in pages:
        await page.goto(dashboard(stack, admin_token(), AUCTION))
    await wait_for_stored(stack.store, AUCTION)
    for page in pages:
        await page.locator("#refresh").click()
        await expect(page.locator("#chart circle.point.peak").first).to_be_visible()
    shown = [await page.locator("#summary-peak").text_content() for page in pages]

    await stack.ingest.stop(0)
    for page, peak in zip(pages, shown, strict=True):
        await page.locator("#refresh").click()
        await expect(page.locator("#analytics-message")).to_contain_text("temporarily unavailable")
        # What was true a moment ago stays, marked as such (it was wiped).
        await expect(page.locator("#analytics-stale")).to_contain_text("Stale since ")
        await expect(page.locator("#summary-peak")).to_have_text(peak or "")
        await expect(page.locator("#chart circle.point.peak").first).to_be_visible()
        await expect(page.locator("#settings-message")).to_contain_text("(as of ")
        await expect(page.locator("#analytics-toggle")).to_be_disabled()
    assert await pages[1].evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await pages[0].screenshot(path=str(ARTIFACTS / "desktop-1280-stale.png"), full_page=True)
    await pages[1].screenshot(path=str(ARTIFACTS / "phone-390-stale.png"), full_page=True)

    # A fresh load during the outage knows nothing: the switch is unknown, the tiles empty.
    fresh = await desktop.new_page()
    await fresh.goto(dashboard(stack, admin_token(), AUCTION))
    await expect(fresh.locator("#analytics-message")).to_contain_text("temporarily unavailable")
    await expect_unknown_toggle(fresh)
    await expect(fresh.locator("#summary-peak")).to_have_text(NO_VALUE)
    await expect(fresh.locator("#analytics-stale")).to_be_hidden()
    await fresh.screenshot(path=str(ARTIFACTS / "desktop-1280-fresh-outage.png"), full_page=True)
    await desktop.close()
    await phone.close()
