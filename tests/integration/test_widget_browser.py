"""The ``<viewer-count>`` widget (issue 18) in headless Chromium, embedded as docs/widget.md says.

A real gateway and a real GraphQL API (which serves the widget) on free loopback ports, and an auction
page on a third origin holding the HTML of docs/widget.md; real python-socketio viewers join and leave.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import Page, expect

from graphql_api.app import create_app
from tests.gateway_support import gateway_config, running_gateway
from tests.graphql_support import graphql_config
from tests.integration.test_dashboard_browser import chromium

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tmp" / "artifacts" / "widget"
PAGE_WAIT_MS = 10_000
AUCTION = "64f0c2a1e4b0a1b2c3d4e5f6"


def documented_snippet() -> str:
    """The HTML block of docs/widget.md, as a seller would paste it."""
    text = (REPO / "docs" / "widget.md").read_text()
    match = re.search(r"```html\n(.*?)```", text, re.S)
    assert match is not None, "docs/widget.md has no html block"
    return match.group(1)


def bound_socket() -> socket.socket:
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    return bound


@asynccontextmanager
async def served(app: web.Application, bound: socket.socket) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.SockSite(runner, bound).start()
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def shown(page: Page, text: str) -> None:
    await expect(page.locator("viewer-count")).to_have_text(text, timeout=PAGE_WAIT_MS)


async def test_the_documented_snippet_shows_the_live_count_on_another_origin(tmp_path: Path) -> None:
    page_socket, api_socket = bound_socket(), bound_socket()
    page_origin = f"http://127.0.0.1:{page_socket.getsockname()[1]}"
    api_origin = f"http://127.0.0.1:{api_socket.getsockname()[1]}"
    html = documented_snippet().replace("https://api.example", api_origin)
    auction_page = web.Application()

    async def page_handler(_request: web.Request) -> web.Response:
        body = f"<!doctype html><html><head><title>Lot 7</title></head><body><p>Lot 7</p>{html}</body></html>"
        return web.Response(text=body, content_type="text/html")

    auction_page.router.add_get("/", page_handler)
    try:
        async with (
            running_gateway(gateway_config(tmp_path, allowed_origins=(page_origin,))) as gateway,
            served(create_app(graphql_config("127.0.0.1:1", dashboard_gateway_url=gateway.url)), api_socket),
            served(auction_page, page_socket),
            chromium() as browser,
        ):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            context = await browser.new_context(locale="en-GB")
            page = await context.new_page()
            await page.goto(f"{page_origin}/")
            # The page itself is one viewer.
            await shown(page, "1 watching")
            widget = page.locator("viewer-count")
            await expect(widget).to_have_attribute("data-state", "live")
            others = [await gateway.viewer({"auctionId": AUCTION, "viewerId": f"v{n}"}) for n in range(2)]
            await shown(page, "3 watching")
            await others[0].disconnect()
            await shown(page, "2 watching")
            await page.screenshot(path=str(ARTIFACTS / "widget.png"))
            # Another auction: the element switches rooms, and the old one loses the page's viewer.
            await widget.evaluate("element => element.setAttribute('auction', 'lot-8')")
            await shown(page, "1 watching")
            await others[1].wait_for(1)
            await others[1].disconnect()
            # The Socket.IO client came from the API, not from any CDN.
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{api_origin}/widget/socket.io.min.js") as answer,
            ):
                assert answer.status == 200
            assert await page.evaluate("() => typeof window.io") == "function"
            await context.close()
    finally:
        page_socket.close()
        api_socket.close()
