"""Helpers for the fault tests: the services as real child processes, their logs, metrics and stores."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import aiohttp

from socket_gateway.metrics import parse_samples
from testkit import waiting
from testkit.processes import PROCESS_WAIT
from testkit.processes import REPO as REPO
from testkit.processes import ServiceProcess as ServiceProcess
from testkit.processes import service as service
from tests.support import TEST_KEY

# Bounds how long a broken fault test hangs; every wait below is on an event or a polled condition.
FAULT_WAIT = PROCESS_WAIT


def base_env(**extra: str) -> dict[str, str]:
    """The tests' environment without any of the services' own variables, plus ``extra``."""
    prefixes = (
        "INGEST_",
        "MONGODB_",
        "GATEWAY_",
        "OUTBOX_",
        "GRAPHQL_",
        "ANALYTICS_",
        "SNAPSHOT_",
        "SAMPLE_",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update(INTERNAL_API_KEY=TEST_KEY, LOG_FORMAT="json", LOG_LEVEL="info")
    env.update(extra)
    return env


async def poll(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Waits for a condition of another process, which has no event this process could await."""
    await waiting.poll(condition, what, within=FAULT_WAIT)


async def metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """The gateway's /metrics as ``{name{labels}: value}``."""
    return parse_samples(await (await http.get(f"http://127.0.0.1:{port}/metrics")).text())


def outbox_keys(outbox_path: Path) -> list[tuple[str, int]]:
    """The (auction, minute) keys queued in a gateway's outbox file, oldest first."""
    with closing(sqlite3.connect(outbox_path)) as db:
        return [
            (row[0], row[1]) for row in db.execute("SELECT auction_id, minute_start FROM outbox ORDER BY id")
        ]


def stored_keys(store_path: Path) -> list[tuple[str, int]]:
    """Every (auction, minute) row in the ingest service's SQLite store, duplicates included."""
    with closing(sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)) as db:
        return [
            (row[0], row[1])
            for row in db.execute("SELECT auction_id, minute_start FROM viewer_snapshots ORDER BY 1, 2")
        ]
