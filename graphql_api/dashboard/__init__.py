"""The analytics dashboard: static files served on the API's own origin, and the config they read.

Served here rather than from a CDN or a separate web server: the page then shares its origin with
``/graphql`` and the CSV export (no CORS for the page's own calls), and a machine without internet
access still has everything it needs. ``config.json`` tells the page the deployment's timing (and,
for the embeddable widget's sake, where the socket gateway is: the page itself never connects to it).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from graphql_api.config import GraphQLConfig

STATIC_DIR = Path(__file__).parent / "static"
DASHBOARD_PATH = "/dashboard/"


def add_dashboard_routes(app: web.Application, config: GraphQLConfig) -> None:
    """Serves the dashboard at ``/dashboard/`` (``/`` redirects there) and its ``config.json``."""
    gateway_url = config.dashboard_gateway_url
    # The page runs only its own files and talks only to this origin (queries, and the live count's
    # subscription on its WebSocket): a token pasted into it cannot be sent anywhere else by injected
    # markup.
    security_policy = "; ".join(
        [
            "default-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data: blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    # Revalidated on every load, so a new release reaches browsers at once (the files are small).
    no_cache = {"Cache-Control": "no-cache"}

    async def index(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC_DIR / "index.html",
            headers={
                **no_cache,
                "Content-Security-Policy": security_policy,
                "Referrer-Policy": "no-referrer",
            },
        )

    async def page_config(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "gatewayUrl": gateway_url,
                "sampleIntervalSeconds": config.timing.sample_interval_seconds,
                "snapshotIntervalSeconds": config.timing.snapshot_interval_seconds,
                "retentionDays": config.retention_days,
            },
            headers=no_cache,
        )

    async def to_dashboard(_request: web.Request) -> web.Response:
        raise web.HTTPFound(DASHBOARD_PATH)

    app.router.add_get("/", to_dashboard)
    app.router.add_get("/dashboard", to_dashboard)
    app.router.add_get(DASHBOARD_PATH, index)
    app.router.add_get(f"{DASHBOARD_PATH}config.json", page_config)
    app.router.add_static(DASHBOARD_PATH, STATIC_DIR, append_version=False)
