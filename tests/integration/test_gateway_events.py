"""Joining, leaving and counting over real Socket.IO connections to a real gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import socketio  # type: ignore[import-untyped]

from tests.gateway_support import WAIT, Viewer, gateway_config, running_gateway


async def test_unique_viewers_collapse_tabs_and_devices(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        laptop = await gateway.viewer({"auctionId": "a1", "viewerId": "alice"})
        await gateway.viewer({"auctionId": "a1", "viewerId": "alice"})
        await gateway.viewer({"auctionId": "a1", "viewerId": "bob"})
        anonymous = await gateway.viewer({"auctionId": "a1"})
        update = await laptop.wait_for(4, unique_viewers=3)
        assert update == {"auctionId": "a1", "viewerCount": 4, "uniqueViewers": 3}
        await anonymous.disconnect()
        await laptop.wait_for(3, unique_viewers=2)


async def test_a_joining_socket_hears_the_count_at_once(tmp_path: Path) -> None:
    # A long coalescing interval: only the direct update can reach the second viewer in time.
    async with running_gateway(gateway_config(tmp_path, count_update_interval_ms=60_000)) as gateway:
        await gateway.viewer({"auctionId": "a1"})
        second = await gateway.viewer({"auctionId": "a1"})
        assert (await second.wait_for(2))["auctionId"] == "a1"


async def test_join_switch_and_leave_by_event(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        watcher_a = await gateway.viewer({"auctionId": "a"})
        watcher_b = await gateway.viewer({"auctionId": "b"})
        roamer = await gateway.viewer()
        assert roamer.updates == []

        ack = await roamer.call("joinAuction", {"auctionId": "a"})
        assert ack == {"ok": True, "auctionId": "a", "viewerCount": 2, "uniqueViewers": 2}
        await watcher_a.wait_for(2)
        # Joining the room it is in again changes nothing.
        assert (await roamer.call("joinAuction", {"auctionId": "a"}))["viewerCount"] == 2

        await roamer.call("joinAuction", {"auctionId": "b"})
        await watcher_a.wait_for(1)
        await watcher_b.wait_for(2)

        assert await roamer.call("leaveAuction") == {"ok": True, "auctionId": "b"}
        await watcher_b.wait_for(1)
        assert await roamer.call("leaveAuction") == {"ok": True, "auctionId": None}
        assert gateway.gateway.registry.member_count == 2


async def test_a_bare_auction_id_joins_and_leaves_like_the_object_form(tmp_path: Path) -> None:
    """Proves the seed's ``socket.emit("joinAuction", auctionId)`` / ``("leaveAuction", auctionId)``:
    a bare id joins and counts like ``{auctionId}``, leaving names the room, and leaving a room the
    socket has already switched away from keeps it where it is."""
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        watcher_a = await gateway.viewer({"auctionId": "a-1"})
        watcher_b = await gateway.viewer({"auctionId": "b-2"})
        roamer = await gateway.viewer({"viewerId": "roamer"})

        ack = await roamer.call("joinAuction", "a-1")
        assert ack == {"ok": True, "auctionId": "a-1", "viewerCount": 2, "uniqueViewers": 2}
        await watcher_a.wait_for(2)
        assert (await roamer.wait_for(2))["auctionId"] == "a-1"

        # Join the next room, then leave the old one by name: it stays in the new one.
        assert (await roamer.call("joinAuction", "b-2"))["viewerCount"] == 2
        await watcher_a.wait_for(1)
        assert await roamer.call("leaveAuction", "a-1") == {"ok": True, "auctionId": None}
        assert gateway.gateway.registry.room_of(roamer.client.get_sid()) == "b-2"

        assert await roamer.call("leaveAuction", "b-2") == {"ok": True, "auctionId": "b-2"}
        await watcher_b.wait_for(1)
        assert gateway.gateway.registry.counts("b-2").viewer_count == 1


async def test_a_hundred_quick_joins_cost_few_updates_and_end_on_the_truth(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path, count_update_interval_ms=200)) as gateway:
        watcher = await gateway.viewer({"auctionId": "hot"})
        await watcher.wait_for(1)
        joiners = [Viewer(gateway.url) for _ in range(100)]
        gateway.viewers += joiners
        await asyncio.gather(*(joiner.connect({"auctionId": "hot"}) for joiner in joiners))
        await watcher.wait_for(101)
        await gateway.gateway.broadcaster.wait_idle()
        # The watcher saw its own join, then a handful of coalesced updates, not one per join.
        assert len(watcher.updates) <= 10
        assert watcher.updates[-1]["viewerCount"] == 101
        await asyncio.gather(*(joiner.disconnect() for joiner in joiners))
        await watcher.wait_for(1)


async def test_exact_counts_under_concurrent_churn(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path, count_update_interval_ms=50)) as gateway:
        watcher = await gateway.viewer({"auctionId": "room"})
        viewers = [Viewer(gateway.url) for _ in range(40)]
        gateway.viewers += viewers
        await asyncio.gather(
            *(v.connect({"auctionId": "room", "viewerId": f"v{i % 7}"}) for i, v in enumerate(viewers))
        )
        # Half leave, a quarter switch rooms and come back, all at once.
        await asyncio.gather(
            *(v.disconnect() for v in viewers[:20]),
            *(v.call("joinAuction", {"auctionId": "other"}) for v in viewers[20:30]),
        )
        await asyncio.gather(*(v.call("joinAuction", {"auctionId": "room"}) for v in viewers[20:25]))
        expected_unique = len({f"v{i % 7}" for i in range(20, 25)} | {f"v{i % 7}" for i in range(30, 40)}) + 1
        await watcher.wait_for(1 + 5 + 10, unique_viewers=expected_unique)
        registry = gateway.gateway.registry
        assert registry.counts("other").viewer_count == 5
        assert registry.counts("room").viewer_count == 16


async def test_a_vanished_client_is_removed_when_engineio_notices(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, ping_interval_seconds=1.0, ping_timeout_seconds=1.0)
    async with running_gateway(config) as gateway:
        watcher = await gateway.viewer({"auctionId": "a1"})
        # A raw WebSocket that joins and then goes silent, like a killed tab: it never answers pings.
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{gateway.url}/socket.io/?EIO=4&transport=websocket")
            assert (await ws.receive_str()).startswith("0")  # engine.io open
            await ws.send_str('40{"auctionId":"a1"}')
            await watcher.wait_for(2)
            await watcher.wait_for(1)  # after the ping timeout, without any leave or close
            await ws.close()


@pytest.mark.parametrize(
    ("event", "payload", "error"),
    [
        ("joinAuction", None, "expected an object"),
        # A bare id is the seed's idiom (issue 20) and joins; a bare id that breaks the id rules does not.
        ("joinAuction", "$where", "may hold only"),
        ("joinAuction", "x" * 500, "longer than"),
        ("joinAuction", "", "non-empty string"),
        ("joinAuction", 5, "expected an object"),
        ("joinAuction", ["a1"], "expected an object"),
        ("leaveAuction", "$where", "may hold only"),
        ("leaveAuction", "x" * 500, "longer than"),
        ("leaveAuction", "", "non-empty string"),
        ("joinAuction", {"auctionId": 5}, "non-empty string"),
        ("joinAuction", {"auctionId": "x" * 500}, "longer than"),
        ("joinAuction", {"auctionId": "$where"}, "may hold only"),
        ("bidOnAuction", {"auctionId": "a1"}, "unknown event"),
        # The catch-all handler's own key as an event name, with and without arguments.
        ("*", None, "unknown event"),
        ("*", {"auctionId": "a1"}, "unknown event"),
    ],
)
async def test_malformed_events_get_an_error_ack_and_the_connection_lives_on(
    tmp_path: Path, event: str, payload: object, error: str
) -> None:
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        viewer = await gateway.viewer()
        ack = await viewer.call(event, payload)
        assert ack["ok"] is False
        assert error in ack["error"]
        assert (await viewer.call("joinAuction", {"auctionId": "a1"}))["ok"] is True
        assert sum(gateway.gateway.metrics.malformed_events.values()) == 1


async def test_an_oversized_message_closes_only_that_connection(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path, max_payload_bytes=2048)) as gateway:
        watcher = await gateway.viewer({"auctionId": "a1"})
        offender = await gateway.viewer({"auctionId": "a1"})
        await watcher.wait_for(2)
        await offender.client.emit("joinAuction", {"auctionId": "a1", "padding": "x" * 10_000})
        await watcher.wait_for(1)
        # The gateway closed the offender's connection: its client's wait() returns.
        await asyncio.wait_for(offender.client.wait(), WAIT)
        assert (await watcher.call("joinAuction", {"auctionId": "a2"}))["ok"] is True


async def test_connections_from_other_origins_are_refused(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await gateway.viewer({"auctionId": "a1"}, headers={"Origin": "https://evil.example"})
        allowed = await gateway.viewer({"auctionId": "a1"}, headers={"Origin": "http://localhost:3000"})
        await allowed.wait_for(1)
        async with aiohttp.ClientSession() as session:
            preflight = await session.options(
                f"{gateway.url}/socket.io/?EIO=4&transport=polling",
                headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
            )
            assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert gateway.gateway.registry.counts("a1").viewer_count == 1


async def test_malformed_connect_auth_is_refused_with_a_reason(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        viewer = Viewer(gateway.url)
        reasons: list[object] = []
        viewer.client.on("connect_error", reasons.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await viewer.connect({"auctionId": "bad id"})
        assert len(reasons) == 1
        assert "auction id may hold only" in str(reasons[0])
        assert gateway.gateway.metrics.connections_refused["malformed_auth"] == 1
        assert gateway.gateway.registry.member_count == 0


@pytest.mark.parametrize("secret", [None, "t" * 40], ids=["tokens_off", "tokens_on"])
async def test_an_overlong_token_is_refused_with_the_limit_that_applies(
    tmp_path: Path, secret: str | None
) -> None:
    async with running_gateway(gateway_config(tmp_path, viewer_token_secret=secret)) as gateway:
        viewer = Viewer(gateway.url)
        reasons: list[object] = []
        viewer.client.on("connect_error", reasons.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await viewer.connect({"auctionId": "a1", "token": "t" * 4097})
        assert reasons == [{"message": "token must be a string of at most 4096 characters"}]
        # At the limit the length is accepted: without tokens the token is not read, with tokens
        # it is checked (and this one is not a JWT).
        if secret is None:
            await (await gateway.viewer({"auctionId": "a1", "token": "t" * 4096})).wait_for(1)
        else:
            with pytest.raises(socketio.exceptions.ConnectionError):
                await viewer.connect({"auctionId": "a1", "token": "t" * 4096})
            assert "invalid viewer token" in str(reasons[-1])
        assert gateway.gateway.registry.member_count == (1 if secret is None else 0)


async def test_connections_beyond_the_per_ip_rate_are_refused(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path, connections_per_ip_per_minute=3)) as gateway:
        for _ in range(3):
            await gateway.viewer({"auctionId": "a1"})
        with pytest.raises(socketio.exceptions.ConnectionError):
            await gateway.viewer({"auctionId": "a1"})
        assert gateway.gateway.metrics.connections_refused["rate_limited"] == 1
        assert gateway.gateway.registry.counts("a1").viewer_count == 3


async def test_signed_viewer_tokens_when_a_secret_is_configured(tmp_path: Path) -> None:
    import time

    import jwt

    secret = "t" * 40
    async with running_gateway(gateway_config(tmp_path, viewer_token_secret=secret)) as gateway:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await gateway.viewer({"auctionId": "a1", "viewerId": "alice"})
        token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
        # The token's subject is the viewer id, whatever id the client claims.
        first = await gateway.viewer({"auctionId": "a1", "token": token, "viewerId": "mallory"})
        await gateway.viewer({"auctionId": "a1", "token": token})
        await first.wait_for(2, unique_viewers=1)
        assert gateway.gateway.metrics.connections_refused["token"] == 1


async def test_a_wildcard_origin_accepts_any_origin(tmp_path: Path) -> None:
    async with running_gateway(gateway_config(tmp_path, allowed_origins=("*",))) as gateway:
        viewer = await gateway.viewer({"auctionId": "a1"}, headers={"Origin": "https://anywhere.example"})
        await viewer.wait_for(1)
