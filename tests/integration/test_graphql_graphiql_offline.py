"""GraphiQL without the internet: the page loads every script and stylesheet from the API itself.

A real API on a loopback port (development mode), a real HTTP client asking as a browser does
(``Accept: text/html``). The page may name no host but the API's own, and every file it references
must be there, be JavaScript or CSS, and match the page's Subresource Integrity hash (as a browser
checks it before running the file).
"""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from tests.conftest import RunningIngest
from tests.graphql_support import graphql_config, running_graphql

# Stops at "%" too: the favicon's inline SVG is URL-encoded (``...svg%22``); the host is what counts.
ANY_URL = re.compile(r"https?://[^\s\"'<>)%]+")
# The favicon is an inline SVG whose markup names its XML namespace: an identifier, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# Python's mimetypes names JavaScript either way, by version and by the system's mime.types.
CONTENT_TYPES = {"script": ("application/javascript", "text/javascript"), "stylesheet": ("text/css",)}
# The smallest file GraphiQL needs (js-cookie) is 1.7 kB; an empty or stub file is far below this.
MIN_BYTES = 500


class PageAssets(HTMLParser):
    """Collects ``<script src>`` and ``<link rel=stylesheet href>``, with their ``integrity``."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[tuple[str, str, str | None]] = []  # (kind, url, integrity)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.assets.append(("script", attributes["src"] or "", attributes.get("integrity")))
        if tag == "link" and attributes.get("rel") == "stylesheet" and attributes.get("href"):
            self.assets.append(("stylesheet", attributes["href"] or "", attributes.get("integrity")))


def sri_sha384(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def test_graphiql_page_loads_every_file_from_the_api(ingest: RunningIngest) -> None:
    async with running_graphql(graphql_config(ingest.target, dev_mode=True), ingest.clock) as dev:
        page_url = f"{dev.base_url}/graphql"
        page = await dev.get("/graphql", headers={"Accept": "text/html"})
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()

        foreign = [url for url in ANY_URL.findall(html) if url != SVG_NAMESPACE]
        foreign = [url for url in foreign if not url.startswith(f"{dev.base_url}/")]
        assert foreign == [], f"the GraphiQL page names other hosts: {foreign}"
        for cdn in ("unpkg", "jsdelivr", "esm.sh", "cdnjs"):
            assert cdn not in html
        # Strawberry's own setup is kept: one fetcher for HTTP and for subscriptions over WebSocket.
        assert "GraphiQL.createFetcher" in html
        assert "subscriptionUrl" in html

        parser = PageAssets()
        parser.feed(html)
        kinds = sorted(kind for kind, _url, _integrity in parser.assets)
        assert kinds.count("script") >= 1, "the page loads no script"
        assert kinds.count("stylesheet") >= 1, "the page loads no stylesheet"
        for kind, reference, integrity in parser.assets:
            url = urljoin(page_url, reference)
            assert urlsplit(url).netloc == urlsplit(dev.base_url).netloc, url
            async with dev.session.get(url) as response:
                assert response.status == 200, url
                assert response.content_type in CONTENT_TYPES[kind], (url, response.content_type)
                body = await response.read()
            assert len(body) >= MIN_BYTES, (url, len(body))
            if integrity is not None:
                assert sri_sha384(body) == integrity, f"{url} would be refused by the page's integrity check"
