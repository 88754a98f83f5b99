"""``subscription { viewerCount(auctionId) }`` over graphql-transport-ws (issue 18).

A real GraphQL API and a real socket gateway, each on port 0: the API reads the counts from the
gateway's LiveCountService stream; real python-socketio viewers join and leave; the client is an
aiohttp WebSocket speaking graphql-transport-ws frame by frame.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from graphql_api.auth import LEEWAY_SECONDS, Role
from tests.gateway_support import WAIT, RunningGateway, gateway_config, running_gateway
from tests.graphql_support import (
    RunningGraphQL,
    admin_token,
    graphql_config,
    running_graphql,
    seller_token,
    token,
)
from tests.stack_support import free_port

VIEWER_COUNT = """
subscription Live($id: ID!) { viewerCount(auctionId: $id) { auctionId viewerCount uniqueViewers at } }
"""
ALERT_DELIVERIES = "subscription Deliveries($id: ID!) { alertDeliveries(auctionId: $id) { id status } }"


class TransportWS:
    """One graphql-transport-ws connection, driven message by message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        # Messages already read that receive() returns first.
        self.pending: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def receive(self) -> dict[str, Any]:
        """The next protocol message (pings answered); a close comes back as ``{"type": "closed"}``."""
        if self.pending:
            return self.pending.pop(0)
        while True:
            message = await asyncio.wait_for(self.ws.receive(), WAIT)
            if message.type is aiohttp.WSMsgType.TEXT:
                body: dict[str, Any] = message.json()
                if body["type"] == "ping":
                    await self.send({"type": "pong"})
                    continue
                return body
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return {"type": "closed", "code": self.ws.close_code, "reason": message.extra}
            raise AssertionError(f"unexpected WebSocket message {message!r}")

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        await self.send({"type": "connection_init", **({"payload": payload} if payload is not None else {})})
        return await self.receive()

    async def subscribe(self, auction_id: str, query: str = VIEWER_COUNT) -> str:
        operation = str(next(self._ids))
        await self.send(
            {
                "id": operation,
                "type": "subscribe",
                "payload": {"query": query, "variables": {"id": auction_id}},
            }
        )
        return operation


@dataclass
class Rig:
    gateway: RunningGateway
    api: RunningGraphQL

    @asynccontextmanager
    async def client(self, bearer: str | None = None) -> AsyncIterator[TransportWS]:
        """A connected, acknowledged client (the token in connection_init)."""
        async with self.raw() as client:
            ack = await client.init({"Authorization": f"Bearer {bearer}"} if bearer else {})
            assert ack["type"] == "connection_ack", ack
            yield client

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[TransportWS]:
        url = f"{self.api.base_url}/graphql"
        async with self.api.session.ws_connect(url, protocols=("graphql-transport-ws",)) as ws:
            assert ws.protocol == "graphql-transport-ws"
            yield TransportWS(ws)


@asynccontextmanager
async def rig(tmp_path: Path, **api_overrides: Any) -> AsyncIterator[Rig]:
    async with running_gateway(gateway_config(tmp_path)) as gateway:
        config = graphql_config("127.0.0.1:1", gateway_grpc_target=gateway.grpc_target)
        async with running_graphql(replace(config, **api_overrides)) as api:
            yield Rig(gateway, api)


async def counts_until(
    client: TransportWS, operation: str, viewers: int, unique: int
) -> list[dict[str, Any]]:
    """The ``viewerCount`` payloads of ``operation`` up to the first with these counts."""
    seen = []
    while True:
        message = await client.receive()
        assert message.get("id") == operation, message
        assert message["type"] == "next", message
        count = message["payload"]["data"]["viewerCount"]
        seen.append(count)
        if (count["viewerCount"], count["uniqueViewers"]) == (viewers, unique):
            return seen


async def test_counts_follow_real_viewers_joining_and_leaving_down_to_zero(tmp_path: Path) -> None:
    """Proves the subscription starts with the current counts, follows joins and leaves of real Socket.IO
    viewers through the gateway's gRPC stream, and ends on zero when the last viewer leaves."""
    async with rig(tmp_path) as stack, stack.client(admin_token()) as client:
        ann = await stack.gateway.viewer({"auctionId": "lot-1", "viewerId": "ann"})
        await ann.wait_for(1)
        operation = await client.subscribe("lot-1")
        (first,) = await counts_until(client, operation, 1, 1)
        assert first["auctionId"] == "lot-1"
        datetime.fromisoformat(first["at"])
        tab = await stack.gateway.viewer({"auctionId": "lot-1", "viewerId": "ann"})
        bob = await stack.gateway.viewer({"auctionId": "lot-1", "viewerId": "bob"})
        await counts_until(client, operation, 3, 2)
        await bob.disconnect()
        await counts_until(client, operation, 2, 1)
        await tab.disconnect()
        await ann.disconnect()
        await counts_until(client, operation, 0, 0)


async def test_a_join_storm_reaches_a_subscriber_at_most_twice_a_second_ending_on_the_truth(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as stack, stack.client(admin_token()) as client:
        operation = await client.subscribe("storm")
        await counts_until(client, operation, 0, 0)
        for index in range(30):
            await stack.gateway.viewer({"auctionId": "storm", "viewerId": f"v{index}"})
        seen = await counts_until(client, operation, 30, 30)
        stamps = [datetime.fromisoformat(count["at"]).timestamp() for count in seen]
        assert all(later - earlier >= 0.5 - 0.01 for earlier, later in itertools.pairwise(stamps)), stamps
        assert len(seen) < 30


async def test_two_subscribers_of_one_auction_share_one_stream_from_the_gateway(tmp_path: Path) -> None:
    async with rig(tmp_path) as stack, stack.client(admin_token()) as one, stack.client(admin_token()) as two:
        first, second = await one.subscribe("shared"), await two.subscribe("shared")
        await counts_until(one, first, 0, 0)
        await counts_until(two, second, 0, 0)
        viewer = await stack.gateway.viewer({"auctionId": "shared"})
        await counts_until(one, first, 1, 1)
        await counts_until(two, second, 1, 1)
        live = stack.gateway.gateway.live_counts
        assert live is not None
        assert live.servicer.open_streams == 1
        await viewer.disconnect()


@pytest.mark.parametrize(
    ("payload", "case"),
    [
        ({}, "no token"),
        ({"Authorization": "Bearer not-a-jwt"}, "malformed"),
        (
            {"Authorization": f"Bearer {token(secret='another-secret-0123456789abcdef-0123456789')}"},
            "bad signature",
        ),
        ({"Authorization": f"Bearer {token(lifetime_seconds=-120)}"}, "expired"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "not bearer"),
    ],
)
async def test_a_connection_without_a_valid_token_is_refused_with_4403(
    tmp_path: Path, payload: dict[str, Any], case: str
) -> None:
    async with rig(tmp_path) as stack, stack.raw() as client:
        answer = await client.init(payload)
        assert answer == {"type": "closed", "code": 4403, "reason": "Forbidden"}, case


async def test_subscribing_before_connection_init_closes_with_4401(tmp_path: Path) -> None:
    async with rig(tmp_path) as stack, stack.raw() as client:
        await client.subscribe("lot-1")
        assert (await client.receive())["code"] == 4401


async def test_the_token_may_also_come_as_token(tmp_path: Path) -> None:
    async with rig(tmp_path) as stack, stack.raw() as client:
        assert (await client.init({"token": admin_token()}))["type"] == "connection_ack"
        operation = await client.subscribe("lot-2")
        await counts_until(client, operation, 0, 0)


async def test_a_seller_sees_its_own_auction_and_is_refused_another(tmp_path: Path) -> None:
    """Proves the subscription is seller-scoped like the queries: the auctions of the token only."""
    async with rig(tmp_path) as stack, stack.client(seller_token("mine")) as client:
        own = await client.subscribe("mine")
        await counts_until(client, own, 0, 0)
        assert await error_codes_of(client, await client.subscribe("theirs")) == ["NOT_AUTHORIZED"]
        # The refused subscription took nothing from the seller's own.
        viewer = await stack.gateway.viewer({"auctionId": "mine"})
        await counts_until(client, own, 1, 1)
        await viewer.disconnect()


async def error_codes_of(client: TransportWS, operation: str) -> list[str]:
    """The codes of a refused subscription's errors (a ``next`` with errors, then its ``complete``)."""
    message = await client.receive()
    assert message["id"] == operation, message
    assert message["type"] == "next", message
    assert message["payload"]["data"] is None
    assert await client.receive() == {"id": operation, "type": "complete"}
    return [error.get("extensions", {}).get("code", "") for error in message["payload"]["errors"]]


async def subscribe_once_freed(client: TransportWS, auction_id: str) -> str:
    """Subscribes, again while refused for the limit, until a slot is free (bounded by ``WAIT``).

    A ``complete`` sent on another connection frees its slot when the server has handled it and the
    cancelled subscription has unwound, which no message on this connection can wait for.
    """
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        operation = await client.subscribe(auction_id)
        message = await client.receive()
        assert message.get("id") == operation, message
        refused = message["type"] == "next" and message["payload"]["data"] is None
        if not refused:
            client.pending.append(message)
            return operation
        codes = [error.get("extensions", {}).get("code") for error in message["payload"]["errors"]]
        assert codes == ["SUBSCRIPTION_LIMIT_REACHED"], message
        assert await client.receive() == {"id": operation, "type": "complete"}
        assert asyncio.get_running_loop().time() < deadline, "the completed subscription's slot was not freed"
        await asyncio.sleep(0.05)


async def hold_deliveries_once_freed(client: TransportWS, auction_id: str) -> str:
    """Subscribes to ``alertDeliveries`` (which sends nothing while its ingest service is unreachable),
    again while refused for the limit, until it holds a slot (bounded by ``WAIT``): a ping's pong with
    no refusal before it says the subscribe was handled and its field has started."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        operation = await client.subscribe(auction_id, query=ALERT_DELIVERIES)
        await client.send({"type": "ping"})
        message = await client.receive()
        if message["type"] == "pong":
            return operation
        assert message.get("id") == operation, message
        codes = [error.get("extensions", {}).get("code") for error in message["payload"]["errors"]]
        assert codes == ["SUBSCRIPTION_LIMIT_REACHED"], message
        assert await client.receive() == {"id": operation, "type": "complete"}
        assert (await client.receive())["type"] == "pong"
        assert asyncio.get_running_loop().time() < deadline, "the completed subscription's slot was not freed"
        await asyncio.sleep(0.05)


async def test_a_bad_auction_id_is_bad_user_input(tmp_path: Path) -> None:
    async with rig(tmp_path) as stack, stack.client(admin_token()) as client:
        assert await error_codes_of(client, await client.subscribe("not an id")) == ["BAD_USER_INPUT"]


async def test_subscriptions_per_connection_are_limited(tmp_path: Path) -> None:
    async with (
        rig(tmp_path, max_subscriptions_per_connection=2) as stack,
        stack.client(admin_token()) as client,
    ):
        for auction in ("a", "b"):
            await counts_until(client, await client.subscribe(auction), 0, 0)
        third = await client.subscribe("c")
        message = await client.receive()
        assert message["id"] == third
        assert message["type"] == "error"
        assert message["payload"][0]["message"] == "Subscription limit reached"


async def test_subscriptions_per_token_are_limited_over_all_connections_and_freed_on_complete(
    tmp_path: Path,
) -> None:
    seller = token(Role.SELLER, ["a", "b", "c"], subject="seller-limited")
    async with (
        rig(tmp_path, max_subscriptions_per_token=2) as stack,
        stack.client(seller) as one,
        stack.client(seller) as two,
    ):
        first = await one.subscribe("a")
        await counts_until(one, first, 0, 0)
        await counts_until(two, await two.subscribe("b"), 0, 0)
        assert await error_codes_of(two, await two.subscribe("c")) == ["SUBSCRIPTION_LIMIT_REACHED"]
        # Another caller is not held to this one's budget.
        async with stack.client(admin_token()) as admin:
            await counts_until(admin, await admin.subscribe("c"), 0, 0)
        await one.send({"id": first, "type": "complete"})
        second_c = await subscribe_once_freed(two, "c")
        await counts_until(two, second_c, 0, 0)
        # One budget for every subscription field: alertDeliveries holds a slot as viewerCount does
        # (its ingest service is unreachable here: the subscription waits and keeps its slot).
        await two.send({"id": second_c, "type": "complete"})
        deliveries = await hold_deliveries_once_freed(one, "a")
        assert await error_codes_of(two, await two.subscribe("c")) == ["SUBSCRIPTION_LIMIT_REACHED"]
        refused = await two.subscribe("b", query=ALERT_DELIVERIES)
        assert await error_codes_of(two, refused) == ["SUBSCRIPTION_LIMIT_REACHED"]
        await one.send({"id": deliveries, "type": "complete"})
        await counts_until(two, await subscribe_once_freed(two, "c"), 0, 0)


async def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    """Proves the idle timeout: a connection that never sends connection_init, and one that holds no
    subscription (never, or no longer), are closed with 4408 once it passes."""
    async with rig(tmp_path, subscription_idle_timeout_seconds=1.0) as stack:
        async with stack.raw() as silent:
            assert (await silent.receive())["code"] == 4408
        async with stack.client(admin_token()) as idle:
            closed = await idle.receive()
            assert closed["code"] == 4408
            assert "idle" in closed["reason"]
        async with stack.client(admin_token()) as client:
            operation = await client.subscribe("a")
            await counts_until(client, operation, 0, 0)
            await client.send({"id": operation, "type": "complete"})
            assert (await client.receive())["code"] == 4408


async def test_queries_and_mutations_are_refused_over_the_websocket(tmp_path: Path) -> None:
    """Proves the WebSocket serves subscriptions only: a query there would escape the per-request
    seconds and bytes budgets, which hold over HTTP."""
    async with rig(tmp_path) as stack, stack.client(admin_token()) as client:
        operation = await client.subscribe("a", query="query ($id: ID!) { auction(id: $id) { id } }")
        message = await client.receive()
        assert message["id"] == operation
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "only subscriptions" in message["payload"][0]["message"]
        # The connection goes on.
        await counts_until(client, await client.subscribe("a"), 0, 0)


async def test_subscribers_with_different_selections_of_one_auction_each_get_their_own(
    tmp_path: Path,
) -> None:
    """Proves the execution shared between the subscribers of one event is per document: a subscriber
    asking for fewer fields gets those fields only, one asking for all gets all of them; and that the
    subscribers of one document get the same message (the first executes the event, the others are
    sent its result directly), each under its own operation id."""
    narrow_query = "subscription ($id: ID!) { viewerCount(auctionId: $id) { viewerCount } }"
    async with (
        rig(tmp_path) as stack,
        stack.client(admin_token()) as full,
        stack.client(admin_token()) as narrow,
        stack.client(admin_token()) as full_too,
    ):
        full_op = await full.subscribe("mixed")
        await narrow.subscribe("mixed", query=narrow_query)
        full_too_op = await full_too.subscribe("mixed")
        assert full_too_op == full_op == "1"
        await full_too.subscribe("mixed", query=narrow_query)
        await counts_until(full, full_op, 0, 0)
        first = await narrow.receive()
        assert first["payload"]["data"] == {"viewerCount": {"viewerCount": 0}}
        for _ in range(2):  # the first counts of both its operations
            assert (await full_too.receive())["type"] == "next"
        viewer = await stack.gateway.viewer({"auctionId": "mixed", "viewerId": "v"})
        (seen,) = await counts_until(full, full_op, 1, 1)
        assert set(seen) == {"auctionId", "viewerCount", "uniqueViewers", "at"}
        assert (await narrow.receive())["payload"]["data"] == {"viewerCount": {"viewerCount": 1}}
        received = {}
        for _ in range(2):
            message = await full_too.receive()
            received[message["id"]] = message
        assert received["1"] == {"id": "1", "type": "next", "payload": {"data": {"viewerCount": seen}}}
        assert received["2"] == {
            "id": "2",
            "type": "next",
            "payload": {"data": {"viewerCount": {"viewerCount": 1}}},
        }
        await viewer.disconnect()


async def test_a_subscription_opened_while_the_gateway_is_down_follows_it_once_it_starts(
    tmp_path: Path,
) -> None:
    """Proves the API reopens the gateway's stream by itself: subscribed before any gateway listens on
    GATEWAY_GRPC_TARGET, the subscriber gets the counts once one starts there."""
    port = free_port()
    config = graphql_config("127.0.0.1:1", gateway_grpc_target=f"127.0.0.1:{port}")
    async with running_graphql(config) as api:
        waiting = Rig(None, api)  # type: ignore[arg-type]
        async with waiting.client(admin_token()) as client:
            operation = await client.subscribe("late")
            async with running_gateway(gateway_config(tmp_path, grpc_port=port)) as gateway:
                await counts_until(client, operation, 0, 0)
                viewer = await gateway.viewer({"auctionId": "late"})
                await counts_until(client, operation, 1, 1)
                await viewer.disconnect()


async def test_a_websocket_is_closed_when_its_token_expires(tmp_path: Path) -> None:
    """Proves a token's expiry ends its WebSocket (4403) at the moment an HTTP request with it would be
    refused (exp plus the leeway), rather than the subscription streaming on for as long as it is open."""
    # Expired 2 s short of the leeway: accepted now, refused from 2 s on.
    nearly = token(lifetime_seconds=-(LEEWAY_SECONDS - 2))
    async with rig(tmp_path) as stack, stack.client(nearly) as client:
        operation = await client.subscribe("a")
        await counts_until(client, operation, 0, 0)
        closed = await client.receive()
        assert closed == {"type": "closed", "code": 4403, "reason": "token expired"}
