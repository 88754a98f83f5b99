"""``python -m graphql_api`` as a real process: starts on port 0, answers, and stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningIngest
from tests.graphql_support import JWT_SECRET, SETTINGS_QUERY, admin_token
from tests.support import TEST_KEY

REPO = Path(__file__).resolve().parents[2]
# Start-up and shutdown of a Python process on a busy 2-CPU machine: generous, still bounded.
WAIT_SECONDS = 30.0


def child_env(**variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("GRAPHQL_", "INGEST_"))}
    paths = [str(REPO), str(REPO / "generated"), env.get("PYTHONPATH", "")]
    env.update({"PYTHONPATH": os.pathsep.join(path for path in paths if path), "LOG_FORMAT": "json"})
    env.update(variables)
    return env


async def next_log(stream: asyncio.StreamReader, message: str) -> dict[str, Any]:
    """Reads JSON log lines until one carries ``message``."""
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError(f"the process ended its log before {message!r}")
        entry: dict[str, Any] = json.loads(raw)
        if entry.get("message") == message:
            return entry


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serves_then_stops_cleanly(ingest: RunningIngest, stop_signal: signal.Signals) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graphql_api",
        env=child_env(
            INTERNAL_API_KEY=TEST_KEY,
            GRAPHQL_JWT_SECRET=JWT_SECRET,
            GRAPHQL_PORT="0",
            INGEST_TARGET=ingest.target,
        ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        listening = await asyncio.wait_for(next_log(process.stderr, "GraphQL API listening"), WAIT_SECONDS)
        base = f"http://127.0.0.1:{listening['port']}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/readyz") as ready:
                assert ready.status == 200
            async with session.post(
                f"{base}/graphql",
                json={"query": SETTINGS_QUERY, "variables": {"id": "a-1"}},
                headers={"Authorization": f"Bearer {admin_token()}"},
            ) as answered:
                body = await answered.json()
        assert body == {
            "data": {
                "auction": {
                    "id": "a-1",
                    "settings": {"auctionId": "a-1", "enableViewerAnalytics": False, "updatedAt": None},
                }
            }
        }
        process.send_signal(stop_signal)
        await asyncio.wait_for(next_log(process.stderr, "GraphQL API stopped"), WAIT_SECONDS)
        assert await asyncio.wait_for(process.wait(), WAIT_SECONDS) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_refuses_to_start_naming_the_variable() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graphql_api",
        env=child_env(INTERNAL_API_KEY=TEST_KEY, GRAPHQL_JWT_SECRET="too-short"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), WAIT_SECONDS)
    assert process.returncode == 2
    assert "GRAPHQL_JWT_SECRET" in stderr.decode()
