"""``python -m local_stack`` as a real process: it starts the three services, says where the dashboard
is, and stops them all on Ctrl-C (SIGINT) with exit code 0.

local_stack takes fixed ports from its environment (each service must know the others' addresses
before it starts), so the test finds free ones by binding port 0 and releasing it: another process
could take one in between, which would fail this test loudly, never pass it wrongly.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
# Three services starting on a 2-core machine shared with other tests.
START_TIMEOUT = 30.0
STACK_VARIABLES = {
    "INTERNAL_API_KEY",
    "GRAPHQL_JWT_SECRET",
    "INGEST_TARGET",
    "ALLOWED_ORIGIN",
    "DASHBOARD_GATEWAY_URL",
    "ANALYTICS_SQLITE_PATH",
    "OUTBOX_PATH",
    "MONGODB_URI",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_starts_everything_serves_the_dashboard_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: str(free_port()) for name in ("INGEST_PORT", "GATEWAY_PORT", "GRAPHQL_PORT")}
    # What local_stack fills in itself must not leak in from the environment running the tests.
    environment = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local_stack",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=REPO,
        env={**environment, **ports},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []

    async def read_until_banner() -> str:
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.strip().startswith("Dashboard "):
                return line
        raise AssertionError("local_stack exited before its banner:\n" + "".join(lines[-30:]))

    try:
        banner_line = await asyncio.wait_for(read_until_banner(), START_TIMEOUT)
        # Keep reading, so the children's logs never fill the pipe.
        drain = asyncio.create_task(_drain(process.stderr, lines))
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/dashboard/)#token=(\S+)", banner_line)
        assert match is not None, banner_line
        dashboard, port, token = match.groups()
        assert port == ports["GRAPHQL_PORT"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{dashboard}config.json") as answer:
                assert await answer.json() == {
                    "gatewayUrl": f"http://127.0.0.1:{ports['GATEWAY_PORT']}",
                    # The stack's defaults, as its gateway and ingest service use them.
                    "sampleIntervalSeconds": 5,
                    "snapshotIntervalSeconds": 60,
                    "retentionDays": 90,
                }
            # The printed token is accepted by the API it started.
            query = {"query": '{ auction(id: "auction-1") { settings { enableViewerAnalytics } } }'}
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(f"http://127.0.0.1:{port}/graphql", json=query, headers=headers) as answer:
                body = await answer.json()
            assert body == {"data": {"auction": {"settings": {"enableViewerAnalytics": False}}}}, body
            async with http.get(f"http://127.0.0.1:{ports['GATEWAY_PORT']}/healthz") as answer:
                assert answer.status == 200

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), START_TIMEOUT) == 0
        await drain
        log = "".join(lines)
        for stopped in ("GraphQL API stopped", "Socket gateway stopped", "Ingest service stopped"):
            assert stopped in log
        # Stopped in reverse order: the gateway flushes to the ingest service before it goes.
        assert log.index("Socket gateway stopped") < log.index("Ingest service stopped")
    finally:
        if process.returncode is None:
            # A failed assertion stops the stack gracefully first: killed outright, local_stack
            # could not stop its children, which run in sessions of their own (seen: a failed run
            # left all three services running).
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), START_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for raw in stream:
        lines.append(raw.decode(errors="replace"))
