"""GraphiQL in a real browser with no way out: headless Chromium (Debian's package) may reach only the
API's own origin; every other request is aborted and recorded. The editor must render all the same."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Route, expect

from tests.conftest import RunningIngest
from tests.graphql_support import graphql_config, running_graphql
from tests.integration.test_dashboard_browser import PAGE_WAIT_MS, chromium


async def test_graphiql_renders_with_only_the_api_reachable(ingest: RunningIngest) -> None:
    expect.set_options(timeout=PAGE_WAIT_MS)
    async with (
        running_graphql(graphql_config(ingest.target, dev_mode=True), ingest.clock) as dev,
        chromium() as browser,
    ):
        own_origin = urlsplit(dev.base_url).netloc
        blocked: list[str] = []

        async def only_the_api(route: Route) -> None:
            url = route.request.url
            if url.startswith("data:") or urlsplit(url).netloc == own_origin:
                await route.continue_()
            else:
                blocked.append(url)
                await route.abort("internetdisconnected")

        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.route("**/*", only_the_api)
        page = await context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        await page.goto(f"{dev.base_url}/graphql")

        # GraphiQL replaced the page's "Loading..." with its editors, and read the schema.
        await expect(page.locator("#graphiql .graphiql-query-editor .CodeMirror")).to_be_visible()
        await expect(page.locator("#graphiql")).not_to_contain_text("Loading...")
        # The explorer plugin loaded too, and lists the schema's fields (read through the page's fetcher).
        await page.get_by_role("button", name="Show GraphiQL Explorer").click()
        await expect(page.locator(".graphiql-plugin")).to_contain_text("auction")

        assert blocked == []
        assert page_errors == []
        await context.close()
