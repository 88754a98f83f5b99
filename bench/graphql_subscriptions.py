"""GraphQL subscriptions against the Socket.IO fan-out (issue 18): CPU per delivered update, same run.

Run from the repository root (figures and their meaning: docs/benchmarks.md, "GraphQL subscriptions")::

    .venv/bin/python -m bench.graphql_subscriptions --subscribers 1000 --rounds 20

One ``python -m socket_gateway`` and one ``python -m graphql_api`` (as shipped, the API reading the
gateway's LiveCountService stream), both pinned to CPU 0; this process, the load client, to CPU 1.
N GraphQL clients (aiohttp WebSockets speaking graphql-transport-ws) subscribe to ``viewerCount`` of
one auction, and N Socket.IO sockets (the lean client of bench/gateway_bench.py) sit in its room. A
toggler socket joins and leaves the room, one change per round; the next round starts once every
subscriber and every socket has received that round's update (each subscription is held to two
updates a second, so a round lasts at least 0.5 s). Each server's CPU time (utime + stime from
/proc) over the rounds, divided by the updates it delivered, is its cost per delivered update; the
ratio API / gateway is the figure the issue asks for (goal: at most 5).

Only loopback addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from bench.gateway_bench import (
    CLIENT_CPU,
    SERVER_CPU,
    STEP_TIMEOUT,
    ServerProcess,
    Tally,
    _drain,
    gateway_server,
    open_many,
)
from bench.lean_socketio import LeanSocket
from graphql_api.auth import Role, issue_token
from testkit.processes import port_from_log, spawn

GOAL_RATIO = 5.0
AUCTION = "bench-subscriptions"
QUERY = "subscription ($id: ID!) { viewerCount(auctionId: $id) { auctionId viewerCount uniqueViewers at } }"


@contextlib.asynccontextmanager
async def api_server(gateway_grpc: str, key: str, secret: str, workdir: Path) -> AsyncIterator[ServerProcess]:
    env = {
        **os.environ,
        "INTERNAL_API_KEY": key,
        "GRAPHQL_JWT_SECRET": secret,
        "GRAPHQL_HOST": "127.0.0.1",
        "GRAPHQL_PORT": "0",
        "INGEST_TARGET": "127.0.0.1:1",
        "GATEWAY_GRPC_TARGET": gateway_grpc,
        "GRAPHQL_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "GRAPHQL_MAX_SUBSCRIPTIONS_PER_TOKEN": "100000",
        "GRAPHQL_SUBSCRIPTION_IDLE_TIMEOUT_SECONDS": "600",
        "ENV_FILE": "/dev/null",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    process = await spawn("graphql_api", env, stderr=asyncio.subprocess.PIPE, cpus=SERVER_CPU)
    assert process.stderr is not None
    port = await port_from_log(process.stderr, "GraphQL API listening")
    server = ServerProcess(process, port, asyncio.create_task(_drain(process.stderr)))
    try:
        yield server
    finally:
        await server.stop()


class Subscriber:
    """One graphql-transport-ws client subscribed to the auction; counts its ``next`` messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, token: str, tally: Tally) -> Subscriber:
        ws = await session.ws_connect(url, protocols=("graphql-transport-ws",), max_msg_size=0)
        await ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        ack = await asyncio.wait_for(ws.receive_json(), STEP_TIMEOUT)
        assert ack["type"] == "connection_ack", ack
        await ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"id": AUCTION}}}
        )
        return cls(ws, tally)

    async def _read(self) -> None:
        async for message in self.ws:
            # Counted, not decoded: the load client must not set the pace.
            if message.type is aiohttp.WSMsgType.TEXT and '"type":"next"' in message.data:
                self.tally.on_update(b"")

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def measure(subscribers: int, rounds: int) -> dict[str, float]:
    os.sched_setaffinity(0, {CLIENT_CPU})
    key, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    token = issue_token(secret, subject="bench", role=Role.ADMIN, now=time.time(), lifetime_seconds=3600)
    grpc_port = _free_port()
    # COUNT_UPDATE_INTERVAL_MS=10: the room's own updates never merge two rounds.
    extra = {"INTERNAL_API_KEY": key, "GATEWAY_GRPC_PORT": str(grpc_port)}
    with tempfile.TemporaryDirectory() as workdir:
        async with (
            gateway_server(10, Path(workdir), extra_env=extra) as gateway,
            api_server(f"127.0.0.1:{grpc_port}", key, secret, Path(workdir)) as api,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        ):
            graphql_tally, socket_tally = Tally(), Tally()
            subs = [
                await Subscriber.open(session, f"{api.url}/graphql", token, graphql_tally)
                for _ in range(subscribers)
            ]
            members = await open_many(
                gateway.url, subscribers, lambda _: {"auctionId": AUCTION}, socket_tally
            )
            toggler = await LeanSocket.open(gateway.url)
            # Settle: every subscriber has its first counts, and the members' joins are told.
            await graphql_tally.wait_for(subscribers)
            await asyncio.sleep(1.5)
            g_base, s_base = graphql_tally.received, socket_tally.received
            gateway_cpu, api_cpu, wall = gateway.cpu_seconds(), api.cpu_seconds(), time.monotonic()
            for index in range(rounds):
                await toggler.call("leaveAuction" if index % 2 else "joinAuction", {"auctionId": AUCTION})
                await socket_tally.wait_for(s_base + (index + 1) * subscribers)
                await graphql_tally.wait_for(g_base + (index + 1) * subscribers)
            gateway_cpu = gateway.cpu_seconds() - gateway_cpu
            api_cpu = api.cpu_seconds() - api_cpu
            wall = time.monotonic() - wall
            graphql_delivered = graphql_tally.received - g_base
            socket_delivered = socket_tally.received - s_base
            await asyncio.gather(*(sub.close() for sub in subs), *(member.close() for member in members))
            await toggler.close()
    api_us = api_cpu / graphql_delivered * 1e6
    gateway_us = gateway_cpu / socket_delivered * 1e6
    return {
        "subscribers": subscribers,
        "rounds": rounds,
        "graphql_delivered": graphql_delivered,
        "socketio_delivered": socket_delivered,
        "api_cpu_s": round(api_cpu, 3),
        "gateway_cpu_s": round(gateway_cpu, 3),
        "wall_s": round(wall, 2),
        "api_us_per_update": round(api_us, 1),
        "gateway_us_per_update": round(gateway_us, 1),
        "ratio": round(api_us / gateway_us, 2),
        "goal_ratio": GOAL_RATIO,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.subscribers, args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
