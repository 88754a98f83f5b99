"""GATEWAY_SOCKETIO_PATHS (issue 20): several Socket.IO paths, one set of rooms and counts."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import socketio  # type: ignore[import-untyped]

from socket_gateway.transport.websocket import WebSocketSession
from tests.gateway_support import gateway_config, running_gateway, wait_until
from tests.js_clients import JsClients

# The seed's two paths: "Main IO" and "Auction IO".
SEED_PATHS = ("/socket/", "/auction/")


async def test_two_paths_share_one_rooms_counts_on_every_transport_and_each_is_admitted(
    tmp_path: Path,
) -> None:
    """Proves that real python-socketio clients on two configured paths (WebSocket through the
    gateway's own transport on each, long-polling, and polling upgraded to WebSocket) count in one
    room and hear one count; that the per-address handshake limit counts and refuses on each path;
    and that the default path is no longer served."""
    config = gateway_config(tmp_path, socketio_paths=SEED_PATHS, connections_per_ip_per_minute=4)
    async with running_gateway(config) as gateway:
        sockets = gateway.gateway.sio.eio.sockets
        on_socket = await gateway.viewer({"auctionId": "a1", "viewerId": "v1"}, socketio_path="socket")
        on_auction = await gateway.viewer({"auctionId": "a1", "viewerId": "v2"}, socketio_path="auction")
        for viewer in (on_socket, on_auction):
            # Served by the gateway's own WebSocket transport, not handed to aiohttp.
            assert isinstance(sockets[viewer.client.eio.sid], WebSocketSession)
        polling = await gateway.viewer(
            {"auctionId": "a1", "viewerId": "v3"}, socketio_path="auction", transports=["polling"]
        )
        upgraded = await gateway.viewer(
            {"viewerId": "v4"}, socketio_path="socket", transports=["polling", "websocket"]
        )
        await wait_until(lambda: upgraded.client.transport() == "websocket", "the upgrade to WebSocket")
        assert polling.client.transport() == "polling"

        assert (await upgraded.call("joinAuction", "a1"))["viewerCount"] == 4
        for viewer in (on_socket, on_auction, polling, upgraded):
            await viewer.wait_for(4, unique_viewers=4)
        assert await polling.call("leaveAuction", "a1") == {"ok": True, "auctionId": "a1"}
        for viewer in (on_socket, on_auction, upgraded):
            await viewer.wait_for(3, unique_viewers=3)

        # Four handshakes this minute from this address, on both paths: the next, on each path and
        # each transport (aiohttp's and the gateway's own), are refused with 429.
        for path in ("socket", "auction"):
            for transports in (["websocket"], ["polling"]):
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await gateway.viewer({"auctionId": "a1"}, socketio_path=path, transports=transports)
        assert gateway.gateway.metrics.connections_refused["rate_limited"] == 4
        assert gateway.gateway.registry.counts("a1").viewer_count == 3

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway.url}/socket.io/?EIO=4&transport=polling") as response,
        ):
            assert response.status == 404
        # python-engineio does not end a pending long-poll when its client closes: without abort,
        # python-socketio's polling client waits ~30 s for it.
        await polling.client.eio.disconnect(abort=True)


async def test_the_official_socketio_client_counts_on_each_seed_path_on_every_transport(
    tmp_path: Path,
) -> None:
    """Proves that the seed frontend's own library, socket.io-client under Node, configured with
    the seed's two paths, connects on each with WebSocket only, long-polling only and its default
    (polling, then the upgrade), that all six count in one room and each hears the exact total,
    and that the room empties when they leave."""
    per_path = {"websocket": 1, "polling": 1, "upgrading": 1}
    viewers = len(SEED_PATHS) * sum(per_path.values())
    config = gateway_config(tmp_path, socketio_paths=SEED_PATHS)
    async with running_gateway(config) as gateway:
        clients = [await JsClients.start(gateway.url, "a1", per_path, path) for path in SEED_PATHS]
        try:

            def everyone_hears_the_total() -> bool:
                return all(
                    len(js.upgraded()) == 1
                    and js.latest_counts() == {client: viewers for client in js.connects()}
                    and len(js.connects()) == sum(per_path.values())
                    for js in clients
                )

            await wait_until(everyone_hears_the_total, f"each socket.io-client hearing {viewers}")
            assert gateway.gateway.registry.counts("a1").viewer_count == viewers
        finally:
            for js in clients:
                await js.close()
        assert [js.connect_errors() for js in clients] == [[], []]
        await wait_until(lambda: gateway.gateway.registry.counts("a1").viewer_count == 0, "the room empty")
