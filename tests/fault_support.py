"""Helpers for the fault tests: the services as real child processes, their logs, metrics and stores."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import aiohttp

from socket_gateway.metrics import parse_samples
from testkit import waiting
from tests.support import TEST_KEY

REPO = Path(__file__).resolve().parents[1]
# Bounds how long a broken fault test hangs; every wait below is on an event or a polled condition.
FAULT_WAIT = 30.0


class ServiceProcess:
    """``python -m <module>`` as a child process; its JSON log lines are collected as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.logs: list[dict[str, Any]] = []
        self._logged = asyncio.Condition()
        self._reader = asyncio.create_task(self._read_logs())

    @classmethod
    async def start(cls, module: str, env: dict[str, str]) -> ServiceProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read_logs(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"message": raw.decode(errors="replace").rstrip()}
            async with self._logged:
                self.logs.append(entry)
                self._logged.notify_all()

    def entries(self, message: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry.get("message") == message]

    async def log_entry(self, message: str, count: int = 1) -> dict[str, Any]:
        """Waits until ``message`` has been logged ``count`` times; returns the latest such entry."""
        async with self._logged:
            await asyncio.wait_for(
                self._logged.wait_for(
                    lambda: len(self.entries(message)) >= count or self.process.returncode is not None
                ),
                FAULT_WAIT,
            )
        found = self.entries(message)
        assert len(found) >= count, f"process exited before logging {message!r}: {self.logs[-5:]}"
        return found[-1]

    async def line_with(self, text: str) -> dict[str, Any]:
        """Waits until a logged line contains ``text`` (in a JSON line's message, or anywhere in a text
        line); returns the first such entry."""

        def found() -> dict[str, Any] | None:
            return next((entry for entry in self.logs if text in str(entry.get("message", ""))), None)

        async with self._logged:
            await asyncio.wait_for(
                self._logged.wait_for(lambda: found() is not None or self.process.returncode is not None),
                FAULT_WAIT,
            )
        entry = found()
        assert entry is not None, f"process exited before logging {text!r}: {self.logs[-5:]}"
        return entry

    def rss_kib(self) -> int:
        """Resident set size of the process, from /proc (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        return int(line.split()[1])

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.exited()

    async def exited(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), FAULT_WAIT)
        await self._reader
        return code


@asynccontextmanager
async def service(module: str, env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    running = await ServiceProcess.start(module, env)
    try:
        yield running
    finally:
        await running.kill()


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
