"""The dashboard's lots, markers and funnel in a real browser (headless Chromium through Playwright).

A real ingest service (SQLite) gets 40 minutes of snapshots with 5-second samples and sketches, and
six lots' events, over gRPC as the gateway and the auction platform's backend send them; a real
GraphQL API serves the page. At 1280 px: a marker per lot on the chart whose hover names the lot,
the per-lot table sorted by a click on a heading, the lot that drew many viewers and no bid picked
out, the funnel's four numbers and bars. At 390 px: the same, readable without sideways scrolling.
Screenshots go to tmp/artifacts/dashboard/.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import datasketches
import pytest
from playwright.async_api import Browser, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from viewer_analytics.v1 import auction_event_service_pb2 as E

from tests.conftest import RunningIngest
from tests.graphql_support import RunningGraphQL, admin_token, graphql_config, running_graphql
from tests.integration.test_dashboard_browser import ARTIFACTS, PAGE_WAIT_MS, chromium, new_context
from tests.integration.test_ingest_auction_events import bid, closed, opened, record
from tests.support import make_snapshot

AUCTION = "auction-lots"


@dataclass(frozen=True)
class LotPlan:
    lot_id: str
    title: str
    opens: int  # minutes before the last whole minute
    closes: int | None
    viewers: int  # watching while the lot is up
    bidders: tuple[str, ...]
    outcome: int | None


PLANS = [
    LotPlan("lot-1", "Tea bowl", 38, 34, 30, ("alice", "bob", "alice"), E.LOT_OUTCOME_SOLD),
    LotPlan("lot-2", "Ink stone", 33, 28, 6, (), E.LOT_OUTCOME_PASSED),
    # Many watched, nobody bid: the one the table picks out.
    LotPlan("lot-3", "Lacquer box", 27, 22, 60, (), E.LOT_OUTCOME_PASSED),
    LotPlan(
        "lot-4", "Hanging scroll", 21, 15, 40, ("carol", "dave", "carol", "erin", "dave"), E.LOT_OUTCOME_SOLD
    ),
    LotPlan("lot-5", "Celadon vase", 14, 9, 25, ("bob",), E.LOT_OUTCOME_WITHDRAWN),
    LotPlan("lot-6", "Folding screen", 8, None, 35, ("alice", "frank"), None),  # no close received
]


def viewers_at(plans: list[LotPlan], minutes_ago: float) -> int:
    for plan in plans:
        end = plan.closes if plan.closes is not None else 0
        if end <= minutes_ago <= plan.opens:
            return plan.viewers
    return 4  # between lots


def cpc(ids: set[str]) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for each in ids:
        sketch.update(each)
    return bytes(sketch.serialize())


async def seed(ingest: RunningIngest) -> tuple[int, set[str]]:
    """40 minutes of snapshots and six lots; returns the last whole minute and the distinct viewers."""
    client = ingest.client()
    await client.set_analytics(AUCTION, True)
    now = int(ingest.clock.now) // 60 * 60
    snapshots, seen = [], set()
    for minutes_ago in range(40, 0, -1):
        start = now - 60 * minutes_ago
        samples = tuple(viewers_at(PLANS, minutes_ago - (i + 1) * 5 / 60) for i in range(12))
        # Viewer i of the minute: signed in for the first third of them, anonymous for the rest.
        ids = {f"viewer-{(minutes_ago * 7 + i) % 90}" for i in range(max(samples))}
        identified = {each for each in ids if int(each.split("-")[1]) % 3 == 0}
        seen |= ids
        snapshots.append(
            make_snapshot(
                AUCTION, start, samples=samples, viewer_count=samples[-1], peak_viewers=max(samples),
                min_viewers=min(samples), avg_viewers=sum(samples) / 12, unique_viewers=min(samples[-1], 4),
                identified_sketch=cpc({"sub-" + each for each in identified}),
                anonymous_sketch=cpc(ids - identified),
            )
        )  # fmt: skip
    acks = await client.send(snapshots)
    assert all(ack.outcome == 1 for ack in acks), acks
    events = []
    for plan in PLANS:
        at = now - 60 * plan.opens
        events.append(opened(f"{plan.lot_id}-open", at, plan.lot_id, plan.title, auction=AUCTION))
        for number, bidder in enumerate(plan.bidders):
            events.append(
                bid(f"{plan.lot_id}-bid-{number}", at + 20 + 15 * number, plan.lot_id, bidder,
                    amount=10_000 + 500 * number, auction=AUCTION)
            )  # fmt: skip
        if plan.closes is not None:
            sold = {}
            if plan.outcome == E.LOT_OUTCOME_SOLD:
                sold = {
                    "hammer_price": 10_000 + 500 * (len(plan.bidders) - 1),
                    "currency": "EUR",
                    "winner_bidder_id": plan.bidders[-1],
                }
            close = closed(f"{plan.lot_id}-close", now - 60 * plan.closes, plan.lot_id, plan.outcome, **sold)  # type: ignore[arg-type]
            close.auction_id = AUCTION
            events.append(close)
    answers = await record(client, *events)
    assert all(ack.outcome == E.AUCTION_EVENT_OUTCOME_STORED for ack in answers), answers
    return now, seen


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    # No gateway: the page's live part says it cannot connect (a closed loopback port); the rest works.
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    gateway_url = f"http://127.0.0.1:{closed_port.getsockname()[1]}"
    closed_port.close()
    config = graphql_config(ingest.target, dashboard_gateway_url=gateway_url)
    async with running_graphql(config, ingest.clock) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=PAGE_WAIT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with chromium() as launched:
        yield launched


async def open_dashboard(page: Page, api: RunningGraphQL) -> None:
    await page.goto(f"{api.base_url}/dashboard/#token={admin_token()}&auction={AUCTION}")
    await page.locator("#range").select_option("LAST_HOUR")
    await expect(page.locator("#lots tbody tr")).to_have_count(len(PLANS))
    # Settled: the last part to load (alert deliveries) may add a scrollbar, which redraws the chart.
    await expect(page.locator("#alerts-message")).not_to_be_empty()


async def lot_order(page: Page) -> list[str]:
    order: list[str] = await page.locator("#lots tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.lotId)"
    )
    return order


async def test_lots_markers_and_funnel_at_1280_and_390(
    api: RunningGraphQL, ingest: RunningIngest, browser: Browser
) -> None:
    _, seen = await seed(ingest)
    context = await new_context(browser)
    page = await context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    await open_dashboard(page, api)

    # The table, in the order the lots opened, with the lot of many viewers and no bid picked out.
    assert await lot_order(page) == [plan.lot_id for plan in PLANS]
    attention = page.locator("#lots tbody tr.attention")
    await expect(attention).to_have_count(1)
    assert await attention.get_attribute("data-lot-id") == "lot-3"
    await expect(attention.locator("td[data-key=lot]")).to_contain_text("Lacquer box")
    scroll_row = page.locator("#lots tbody tr[data-lot-id=lot-4]")
    # lot-4 opens at a sample of 40 and is hammered on the last sample of its lot (40); six
    # minutes of 40 watching; five bids from three bidders; sold for €120.00.
    expected = {
        "viewersAtOpen": "40",
        "viewersAtClose": "40",
        "peakViewers": "40",
        "bids": "5",
        "bidders": "3",
    }
    expected |= {"outcome": "sold", "hammerPrice": "€120.00"}
    for key, text in expected.items():
        await expect(scroll_row.locator(f"td[data-key={key}]")).to_have_text(text)
    await expect(page.locator("#lots tbody tr[data-lot-id=lot-6] td[data-key=outcome]")).to_have_text(
        "no close received"
    )

    # Sorted by a click on a heading: peak highest first, then lowest first.
    await page.locator("#lots th[data-key=peakViewers] button").click()
    await expect(page.locator("#lots th[data-key=peakViewers]")).to_have_attribute("aria-sort", "descending")
    assert (await lot_order(page))[0] == "lot-3"
    await page.locator("#lots th[data-key=peakViewers] button").click()
    await expect(page.locator("#lots th[data-key=peakViewers]")).to_have_attribute("aria-sort", "ascending")
    assert (await lot_order(page))[0] == "lot-2"

    # A marker per lot on the chart; hovering over one names the lot.
    await expect(page.locator("#chart g.lot-marker")).to_have_count(len(PLANS))
    await expect(page.locator("#chart g.lot-marker.open")).to_have_count(1)  # lot-6, no close yet
    band = page.locator("#chart g.lot-marker[data-lot-id=lot-4] rect.lot-band")
    await page.locator("#chart").scroll_into_view_if_needed()
    box = await band.bounding_box()
    assert box is not None
    assert box["width"] > 20, box
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = page.locator("#chart-tooltip")
    await expect(tooltip).to_be_visible()
    await expect(tooltip.locator(".tooltip-lot")).to_contain_text("Lot lot-4 “Hanging scroll”")
    await expect(tooltip.locator(".tooltip-lot")).to_contain_text("5 bids · sold €120.00")
    await page.screenshot(path=str(ARTIFACTS / "lots-1280.png"), full_page=True)

    # The funnel: four numbers, each bar against the widest (the viewers).
    bidders = {bidder for plan in PLANS for bidder in plan.bidders}
    winners = {plan.bidders[-1] for plan in PLANS if plan.outcome == E.LOT_OUTCOME_SOLD}
    viewers = int(await page.locator("#funnel-viewers").get_attribute("data-value") or 0)
    assert viewers == pytest.approx(len(seen), rel=0.03)
    await expect(page.locator("#funnel-bidders")).to_have_text(str(len(bidders)))
    await expect(page.locator("#funnel-winners")).to_have_text(str(len(winners)))
    widths = await page.locator("#funnel .bar span").evaluate_all(
        "bars => bars.map(b => b.getBoundingClientRect().width"
        " / b.parentElement.getBoundingClientRect().width)"
    )
    assert widths[0] == pytest.approx(1.0, abs=0.01)
    assert widths[2] == pytest.approx(len(bidders) / viewers, abs=0.01)
    assert widths[3] == pytest.approx(len(winners) / viewers, abs=0.01)
    await context.close()

    # A phone: nothing wider than the screen, the lots as cards, still sortable by a tap.
    phone = await new_context(browser, phone=True)
    page = await phone.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    await open_dashboard(page, api)
    await expect(page.locator("#chart g.lot-marker")).to_have_count(len(PLANS))
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    # A card line: the cell a labelled flex row at least 14 px tall. Read in one go, and waited for:
    # a refresh may be redrawing the table at that moment (a detached cell has no style).
    card_line = """() => {
        const td = document.querySelector("#lots tbody tr[data-lot-id=lot-3] td[data-key=peakViewers]");
        return td && [getComputedStyle(td).display, getComputedStyle(td, "::before").content,
                      td.getBoundingClientRect().height];
    }"""
    readable = f"() => {{ const line = ({card_line})(); return line && line[0] === 'flex'"
    readable += " && line[1] === '\"Peak\"' && line[2] >= 14; }"
    try:
        await page.wait_for_function(readable)
    except PlaywrightTimeoutError:
        raise AssertionError(
            f"the card line [display, label, height] is {await page.evaluate(card_line)}"
        ) from None
    await page.locator("#lots th[data-key=bids] button").tap()
    assert (await lot_order(page))[0] == "lot-4"  # most bids first
    await page.screenshot(path=str(ARTIFACTS / "lots-390.png"), full_page=True)
    await page.locator("#analytics").screenshot(path=str(ARTIFACTS / "lots-390-chart.png"))
    await page.locator("#audience").screenshot(path=str(ARTIFACTS / "lots-390-table.png"))
    assert page_errors == []
    await phone.close()
