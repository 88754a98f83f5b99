"""The socket gateway with every request served by aiohttp: the baseline for websocket_transport.

``python -m socket_gateway`` serves new WebSocket sessions on its own protocol
(socket_gateway/transport/websocket.py). This runs the same gateway with a plain aiohttp TCPSite,
so every WebSocket is python-engineio's own, as before that transport existed. The load benchmark
measures both in one run:

    .venv/bin/python -m bench.gateway_load --gateway-module bench.gateway_aiohttp_only
"""

from __future__ import annotations

from aiohttp import web

from socket_gateway.main import main


def aiohttp_site(runner: web.AppRunner, host: str, port: int, backlog: int) -> web.BaseSite:
    return web.TCPSite(runner, host, port, backlog=backlog)


if __name__ == "__main__":
    main(aiohttp_site)
