"""Exactly which count updates each socket receives when sockets join, re-join, switch and leave.

Real python-socketio clients on every transport a session can take (the gateway's own WebSocket
transport, python-engineio's WebSocket through aiohttp, long-polling), each recording every
``viewerCountUpdate``. After each step the test waits until the room's coalesced update and every
joiner's own update have been sent, then takes an acknowledgement from each client as a barrier:
a socket's packets arrive in order, so whatever the gateway sent a client before that
acknowledgement has arrived by then.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_support import WAIT, RunningGateway, Viewer, gateway_config, running_gateway, wait_until
from tests.redis_support import RedisServer, poll, redis_server

__all__ = ["redis_server"]

TRANSPORTS = {
    "own websocket": (["websocket"], False),
    "aiohttp websocket": (["websocket"], True),
    "polling": (["polling"], False),
}


def counts(auction_id: str, viewers: int) -> dict[str, Any]:
    return {"auctionId": auction_id, "viewerCount": viewers, "uniqueViewers": viewers}


async def settled(gateway: RunningGateway, *viewers: Viewer) -> None:
    """Returns once every update the gateway will send for what happened so far has arrived."""
    await asyncio.wait_for(gateway.gateway.broadcaster.wait_idle(), WAIT)
    await asyncio.wait_for(gateway.gateway.events.wait_joiners_told(), WAIT)
    await asyncio.gather(*(viewer.call("barrier") for viewer in viewers))


async def viewer_on(gateway: RunningGateway, transports: list[str], auth: dict[str, Any] | None) -> Viewer:
    viewer = Viewer(gateway.url)
    gateway.viewers.append(viewer)
    await viewer.client.connect(gateway.url, auth=auth, transports=transports, wait_timeout=WAIT)
    return viewer


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("interval_ms", [0, 300], ids=["updates_at_once", "updates_coalesced"])
async def test_each_socket_is_told_each_count_once(tmp_path: Path, transport: str, interval_ms: int) -> None:
    """Proves that a joiner receives its room's counts exactly once (at connect or by joinAuction),
    that re-joining the room a socket is in sends nobody anything, that a room update is not repeated
    to a socket already told those counts, and that leaving and joining again tells the counts again,
    both when room updates go out at once and when they are coalesced."""
    transports, through_aiohttp = TRANSPORTS[transport]
    config = gateway_config(tmp_path, count_update_interval_ms=interval_ms)
    async with running_gateway(config, websockets_through_aiohttp=through_aiohttp) as gateway:
        first = await viewer_on(gateway, transports, {"auctionId": "a1"})
        await settled(gateway, first)
        assert first.updates == [counts("a1", 1)]

        second = await viewer_on(gateway, transports, None)
        ack = await second.call("joinAuction", {"auctionId": "a1"})
        assert ack == {"ok": True, **counts("a1", 2)}
        await settled(gateway, first, second)
        assert first.updates == [counts("a1", 1), counts("a1", 2)]
        assert second.updates == [counts("a1", 2)]

        # Joining the room it is in changes nothing: nobody is sent anything.
        again = await second.call("joinAuction", {"auctionId": "a1"})
        assert again == {"ok": True, **counts("a1", 2)}
        await settled(gateway, first, second)
        assert first.updates == [counts("a1", 1), counts("a1", 2)]
        assert second.updates == [counts("a1", 2)]

        third = await viewer_on(gateway, transports, {"auctionId": "a1"})
        await settled(gateway, first, second, third)
        assert first.updates == [counts("a1", 1), counts("a1", 2), counts("a1", 3)]
        assert second.updates == [counts("a1", 2), counts("a1", 3)]
        assert third.updates == [counts("a1", 3)]

        # Away and back: the room hears it left and came back; the socket is told on its return.
        assert (await third.call("leaveAuction"))["ok"] is True
        await settled(gateway, first, second, third)
        assert (await third.call("joinAuction", {"auctionId": "a1"}))["ok"] is True
        await settled(gateway, first, second, third)
        assert third.updates == [counts("a1", 3), counts("a1", 3)]
        assert first.updates[-1] == counts("a1", 3)
        assert all(a != b for a, b in zip(first.updates, first.updates[1:], strict=False))

        # Switching rooms: told the new room's counts once; the old room hears it leave.
        assert (await third.call("joinAuction", {"auctionId": "b2"}))["ok"] is True
        await settled(gateway, first, second, third)
        assert third.updates[2:] == [counts("b2", 1)]
        assert first.updates[-1] == counts("a1", 2)
        assert second.updates[-1] == counts("a1", 2)
        assert all(a != b for a, b in zip(second.updates, second.updates[1:], strict=False))
        # What each socket was sent last is not kept beyond its stay in the room.
        if transports == ["polling"]:
            for viewer in (first, second, third):
                await viewer.call("leaveAuction")
            await wait_until(lambda: gateway.gateway.fanout.remembered_sockets == 0, "sockets forgotten")
            # python-engineio does not end a pending long-poll when its client closes: without
            # abort, python-socketio's polling client waits ~30 s for it.
            for viewer in (first, second, third):
                await viewer.client.eio.disconnect(abort=True)
        else:
            await asyncio.gather(*(viewer.disconnect() for viewer in (first, second, third)))
            await wait_until(lambda: gateway.gateway.fanout.remembered_sockets == 0, "sockets forgotten")


async def test_across_two_nodes_no_socket_is_told_the_same_counts_twice_in_a_row(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves that with REDIS_URL (two nodes in one cluster, room updates relayed between them), a
    joiner on either node is not told the counts it was just told again, whoever published the
    room's update, and every socket ends on the cluster's exact count. A joiner's first count may
    be this node's last-known one, so more than one update per step is allowed; a repeat is not."""
    configs = [
        gateway_config(
            tmp_path / name,
            redis_url=redis_server.url,
            node_lease_seconds=2.0,
            gateway_id=f"node-{name}",
            count_update_interval_ms=100,
        )
        for name in ("a", "b")
    ]
    for config in configs:
        Path(config.outbox_path).parent.mkdir(parents=True, exist_ok=True)
    async with running_gateway(configs[0]) as node_a, running_gateway(configs[1]) as node_b:

        async def both_relaying() -> bool:
            clusters = [node.gateway.cluster for node in (node_a, node_b)]
            listening = all(cluster is not None and cluster.relay.listening for cluster in clusters)
            return listening and all(cluster is not None and cluster.ready for cluster in clusters)

        await poll(both_relaying, "both nodes subscribed to each other's updates")
        viewers: list[Viewer] = []
        for step in range(6):
            node = (node_a, node_b)[step % 2]
            viewers.append(await node.viewer({"auctionId": "shared"}))
            for viewer in viewers:
                await viewer.wait_for(len(viewers))
        # A re-join on each node changes nothing. (Its ack carries the node's last-known counts,
        # which can trail the room's relayed update: docs/socket_gateway.md, "Limits, honestly".)
        for viewer in viewers[:2]:
            assert (await viewer.call("joinAuction", {"auctionId": "shared"}))["ok"] is True
        for node in (node_a, node_b):
            await asyncio.wait_for(node.gateway.broadcaster.wait_idle(), WAIT)
            await asyncio.wait_for(node.gateway.events.wait_joiners_told(), WAIT)
        await asyncio.gather(*(viewer.call("barrier") for viewer in viewers))
        for viewer in viewers:
            assert viewer.updates[-1] == counts("shared", len(viewers))
            repeats = [a for a, b in zip(viewer.updates, viewer.updates[1:], strict=False) if a == b]
            assert repeats == [], viewer.updates
