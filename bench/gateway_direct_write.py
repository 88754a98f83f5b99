"""EXPERIMENT, not the product: the gateway with every WebSocket packet written straight to its socket.

``python -m bench.gateway_direct_write`` runs ``socket_gateway.main()`` after replacing two methods
of Engine.IO's ``AsyncSocket`` for this process only: a WebSocket session's packets skip the
per-socket queue and writer task and go to aiohttp's WebSocket at once. It exists to measure how
much of the fan-out cost is that queue and task (docs/benchmarks.md, "Socket gateway"); it is not
safe to ship as is: a slow client's full send buffer would hold up a whole room's broadcast, a
failed write is not turned into a disconnect, and it patches a library's internals.
"""

from __future__ import annotations

from typing import Any

import engineio.async_socket  # type: ignore[import-untyped]

from socket_gateway.main import main

_original_handler = engineio.async_socket.AsyncSocket._websocket_handler
_original_send = engineio.async_socket.AsyncSocket.send


async def _websocket_handler(self: Any, ws: Any) -> Any:
    self.direct_ws = ws
    try:
        return await _original_handler(self, ws)
    finally:
        self.direct_ws = None


async def _send(self: Any, pkt: Any) -> None:
    ws = getattr(self, "direct_ws", None)
    # Only once nothing is queued, so a direct write does not overtake a queued packet.
    if ws is not None and self.queue.empty() and not self.closed and not self.upgrading:
        await ws.send(pkt.encode())
        return
    await _original_send(self, pkt)


if __name__ == "__main__":
    engineio.async_socket.AsyncSocket._websocket_handler = _websocket_handler
    engineio.async_socket.AsyncSocket.send = _send
    main()
