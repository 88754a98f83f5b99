"""Connections that hold file descriptors without using them: idle, half-sent, one address's many.

The socket gateway in-process on a free port (served as ``python -m socket_gateway`` serves it) and the
GraphQL API as a real process (``python -m graphql_api``), both through service_common.connection_guard;
every client is a raw TCP socket, so a request can stop anywhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from service_common.connection_guard import ConnectionLimits
from tests.fault_support import base_env, service
from tests.gateway_support import WAIT, gateway_config, running_gateway, wait_until
from tests.graphql_support import JWT_SECRET

LIMITS = ConnectionLimits(
    idle_timeout_seconds=0.5, request_timeout_seconds=0.5, max_connections_per_address=4
)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded by WAIT)."""
    received = b""
    while chunk := await asyncio.wait_for(reader.read(65536), WAIT):
        received += chunk
    return received


async def one_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    await asyncio.wait_for(reader.readexactly(length), WAIT)
    return head


async def held_without_use(port: int, *, partial_body: bytes) -> None:
    """An idle keep-alive connection after one request, and one stalled in its next head, are closed;
    so is one whose body stops half way (``partial_body`` is such a request)."""
    async with connection(port) as (reader, writer):
        writer.write(HEALTHZ)
        assert (await one_response(reader)).startswith(b"HTTP/1.1 200 ")
        assert await closed_by_server(reader) == b""  # idle after one request
    async with connection(port) as (reader, writer):
        writer.write(HEALTHZ)
        await one_response(reader)
        writer.write(b"GET /healthz HTTP/1.1\r\nHo")
        assert await closed_by_server(reader) == b""  # the next head never ends
    async with connection(port) as (reader, writer):
        writer.write(partial_body)
        assert await closed_by_server(reader) == b""  # the body never ends


async def capped_per_address(port: int, cap: int) -> None:
    """``cap`` idle connections from one address are held; the next is answered 429 and closed."""
    async with connection(port) as (first_reader, first):
        others = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap - 1)]
        try:
            async with connection(port) as (reader, _):
                refused = await closed_by_server(reader)
                assert refused.startswith(b"HTTP/1.1 429 "), refused
            first.write(HEALTHZ)  # the ones held are still served
            assert (await one_response(first_reader)).startswith(b"HTTP/1.1 200 ")
        finally:
            for _, writer in others:
                writer.close()


async def test_the_gateway_closes_idle_and_half_sent_connections_and_caps_them_per_address(
    tmp_path: Path,
) -> None:
    """Proves on the gateway (every connection, not only handshakes): an idle keep-alive connection, a
    request head or body that never ends are closed after their timeouts (the partial body counted),
    and one address holds at most the cap of open connections while others still connect."""
    async with running_gateway(gateway_config(tmp_path, connections=LIMITS)) as running:
        guard = running.gateway.websockets.connections
        async with connection(running.port) as (reader, writer):
            writer.write(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: test\r\n\r\n")
            opening = (await closed_by_server(reader)).split(b"\r\n\r\n", 1)[1]
        sid = json.loads(opening[1:])["sid"]
        post = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: test\r\n"
            "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n40"
        ).encode()
        await held_without_use(running.port, partial_body=post)
        assert running.gateway.metrics.connections_refused["request_timeout"] == 1
        await wait_until(lambda: guard.open_connections == 0, "connections still counted")
        await capped_per_address(running.port, LIMITS.max_connections_per_address)
        assert running.gateway.metrics.connections_refused["per_address_cap"] == 1
        await wait_until(lambda: guard.open_connections == 0, "connections still counted")


async def test_the_graphql_api_closes_idle_and_half_sent_connections_and_caps_them_per_address(
    tmp_path: Path,
) -> None:
    """Proves the same on ``python -m graphql_api`` with its GRAPHQL_ variables, including a connection
    that never sends a byte (aiohttp's own server has no timeout for its first request)."""
    env = base_env(
        GRAPHQL_JWT_SECRET=JWT_SECRET,
        GRAPHQL_PORT="0",
        INGEST_TARGET="127.0.0.1:1",
        GRAPHQL_HTTP_IDLE_TIMEOUT_SECONDS="1",
        GRAPHQL_HTTP_REQUEST_TIMEOUT_SECONDS="1",
        GRAPHQL_MAX_CONNECTIONS_PER_ADDRESS="4",
    )
    async with service("graphql_api", env) as api:
        port = int((await api.log_entry("GraphQL API listening"))["port"])
        async with connection(port) as (reader, _):
            assert await closed_by_server(reader) == b""  # never sends a byte
        post = (
            b"POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        await held_without_use(port, partial_body=post)
        await capped_per_address(port, 4)
        assert api.process.returncode is None
