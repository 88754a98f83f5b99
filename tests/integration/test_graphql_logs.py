"""No client can write the GraphQL API's log: ``python -m graphql_api`` as a real process, flooded
with malformed HTTP (raw sockets), refused documents, refused variables, bad auction ids, /readyz
probes and queries while the ingest service is down. Every line a client can cause is rate-limited
per cause (the suppressed ones counted), none carries a traceback, and requests are not logged one
line each (``/metrics`` counts them)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections import Counter

import aiohttp

from tests.fault_support import ServiceProcess, base_env
from tests.graphql_support import JWT_SECRET, SETTINGS_QUERY, admin_token

ROUNDS = 40
MALFORMED = (
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,
)


def send_raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(payload)
        return raw.recv(200)


async def test_hostile_requests_write_a_bounded_number_of_lines_and_no_traceback() -> None:
    """Proves the flood of 40 rounds (160 malformed HTTP requests, 160 GraphQL requests refused for
    their document, variables or id, 40 queries and 40 /readyz with the ingest service down) logs
    at most one line per cause, with no traceback, where it logged one traceback per malformed
    request and one access line per request before."""
    api = await ServiceProcess.start(
        "graphql_api",
        # Port 1 on loopback: nothing listens there, so the ingest service is down throughout.
        base_env(GRAPHQL_JWT_SECRET=JWT_SECRET, GRAPHQL_PORT="0", INGEST_TARGET="127.0.0.1:1"),
    )
    try:
        port = (await api.log_entry("GraphQL API listening"))["port"]
        started = len(api.logs)
        loop = asyncio.get_running_loop()
        headers = {"Authorization": f"Bearer {admin_token()}"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for _ in range(ROUNDS):
                for payload in MALFORMED:
                    answer = await loop.run_in_executor(None, send_raw, port, payload)
                    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer
                for body in (
                    {"query": "{ auction(id: "},
                    {"query": '{ auction(id: "a") { nope } }'},
                    {"query": SETTINGS_QUERY, "variables": {"id": 7}},
                    {"query": SETTINGS_QUERY, "variables": {"id": "no spaces allowed"}},
                    {"query": SETTINGS_QUERY, "variables": {"id": "a-1"}},
                ):
                    async with http.post("/graphql", json=body, headers=headers) as response:
                        assert response.status == 200
                        assert (await response.json())["errors"]
                async with http.get("/readyz") as ready:
                    assert ready.status == 503
        api.process.send_signal(signal.SIGTERM)
        # Every line written before the stop has been read once the stop's own last line is.
        await api.log_entry("GraphQL API stopped")
        assert await api.exited() == 0
    finally:
        await api.kill()
    flood = api.logs[started:]
    assert not [entry for entry in flood if "exception" in entry or "Traceback" in str(entry)]
    assert not [entry for entry in flood if entry.get("logger") == "aiohttp.access"]
    by_message = Counter(entry["message"] for entry in flood)
    assert by_message["Malformed HTTP request refused"] == 1, by_message
    assert by_message["Ingest call failed"] <= 1, by_message
    assert by_message["Ingest service not ready"] <= 1, by_message
    shutdown = {"Stop signal received, shutting down", "Ingest channel closed", "GraphQL API stopped"}
    assert sum(count for message, count in by_message.items() if message not in shutdown) <= 3, by_message
