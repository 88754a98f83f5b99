"""GraphiQL without the internet: Strawberry's own page, its CDN files served from this API's origin.

Strawberry's GraphiQL page loads React, GraphiQL, its explorer plugin and their CSS from unpkg, so
on a machine without internet access (or behind a locked-down network) it stays blank. The same
files are vendored next to the dashboard's (``dashboard/static/vendor``, served at
``/dashboard/vendor/``), pinned in ``package.json`` at the versions the installed Strawberry's page
names, and the page is served with its CDN addresses replaced by those paths. Everything else in the
page is Strawberry's: its fetcher (HTTP and WebSocket subscriptions), its script and its
Subresource Integrity hashes, which the vendored files satisfy because unpkg serves npm's tarballs
byte for byte (``tests/unit/test_graphiql_vendor.py`` checks both).
"""

from __future__ import annotations

import re

from strawberry.http.ides import get_graphql_ide_html

from graphql_api.dashboard import DASHBOARD_PATH, STATIC_DIR

VENDOR_DIR = STATIC_DIR / "vendor"
VENDOR_PATH = f"{DASHBOARD_PATH}vendor/"
# Every file the installed Strawberry's GraphiQL page loads -> its vendored copy in VENDOR_DIR.
CDN_FILES: dict[str, str] = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": "react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": "graphiql-plugin-explorer.umd.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "graphiql-plugin-explorer.css",
}
# The favicon is an inline SVG that names its XML namespace: an identifier, nothing is fetched.
_SVG_NAMESPACE = "http://www.w3.org/2000/svg"
_ANY_URL = re.compile(r"https?://[^\s\"'<>)%]+")


class GraphiQLNotVendored(RuntimeError):
    """The installed Strawberry's GraphiQL page loads a file that is not vendored here."""


def offline_graphiql_html(page: str) -> str:
    """Strawberry's GraphiQL page with every CDN address replaced by this API's vendored copy.

    Args:
        page: the page as Strawberry ships it (``get_graphql_ide_html("graphiql")``).

    Raises:
        GraphiQLNotVendored: the page does not name a vendored file, or names another outside
            address; after upgrading Strawberry, pin and vendor what its new page loads.
    """
    for cdn_url, name in CDN_FILES.items():
        if cdn_url not in page:
            raise GraphiQLNotVendored(f"Strawberry's GraphiQL page no longer loads {cdn_url}")
        page = page.replace(cdn_url, f"{VENDOR_PATH}{name}")
    outside = [url for url in _ANY_URL.findall(page) if url != _SVG_NAMESPACE]
    if outside:
        raise GraphiQLNotVendored(f"Strawberry's GraphiQL page loads files that are not vendored: {outside}")
    return page


def graphiql_html() -> str:
    """The installed Strawberry's GraphiQL page, loading everything from this API."""
    return offline_graphiql_html(get_graphql_ide_html("graphiql"))
