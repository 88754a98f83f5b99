"""The embeddable ``<viewer-count auction="…">`` element: its script, the pinned Socket.IO client, its config.

Served by the API under ``/widget/`` for auction pages on any origin: the scripts load with a plain
``<script>`` tag, and ``config.json`` (where the socket gateway is, nothing secret) carries
``Access-Control-Allow-Origin: *`` so the element can read it from another origin. The Socket.IO
client is the vendored, pinned file in the dashboard's ``static/vendor/`` (checked against
node_modules by tests/unit/test_dashboard_vendor.py), served from here too; the dashboard itself now
follows its counts through the ``viewerCount`` subscription, so the widget is why that file is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from graphql_api.config import GraphQLConfig
from graphql_api.dashboard import STATIC_DIR as DASHBOARD_STATIC

WIDGET_PATH = "/widget/"
STATIC_DIR = Path(__file__).parent / "static"
SOCKET_IO_CLIENT = DASHBOARD_STATIC / "vendor" / "socket.io.min.js"
SOCKET_IO_LICENSE = DASHBOARD_STATIC / "vendor" / "LICENSE.socket.io-client"


def add_widget_routes(app: web.Application, config: GraphQLConfig) -> None:
    """``/widget/viewer-count.js``, ``/widget/socket.io.min.js`` and ``/widget/config.json``."""
    # Revalidated on every load, so a new release reaches the embedding pages at once (small files).
    headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}

    def serve(path: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers=headers)

        return handler

    async def widget_config(_request: web.Request) -> web.Response:
        return web.json_response({"gatewayUrl": config.dashboard_gateway_url}, headers=headers)

    app.router.add_get(f"{WIDGET_PATH}viewer-count.js", serve(STATIC_DIR / "viewer-count.js"))
    app.router.add_get(f"{WIDGET_PATH}socket.io.min.js", serve(SOCKET_IO_CLIENT))
    app.router.add_get(f"{WIDGET_PATH}LICENSE.socket.io-client", serve(SOCKET_IO_LICENSE))
    app.router.add_get(f"{WIDGET_PATH}config.json", widget_config)
