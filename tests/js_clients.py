"""The official socket.io-client under Node (``integration/socketio_js_clients.cjs``), for tests that
need what a browser's Socket.IO client does: its events are read from the script's stdout."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_support import WAIT

JS_CLIENT_SCRIPT = Path(__file__).parent / "integration" / "socketio_js_clients.cjs"


def node_binary() -> str:
    """Node.js, which ``scripts/setup`` needs for socket.io-client; CI must have it, elsewhere the
    test is skipped and says so."""
    node = shutil.which("node")
    if node is None:
        reason = "node is not installed (scripts/setup needs it for socket.io-client)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the socket.io-client test: {reason}", pytrace=False)
        pytest.skip(f"SKIPPED: {reason}")
    return node


class JsClients:
    """socket.io-client instances in one Node process: WebSocket only, long-polling only, and the
    library's default (polling, then upgraded), each joined to one auction through ``auth``."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, url: str, auction_id: str, counts: Mapping[str, int], socketio_path: str = "/socket.io/"
    ) -> JsClients:
        process = await asyncio.create_subprocess_exec(
            node_binary(),
            str(JS_CLIENT_SCRIPT),
            url,
            auction_id,
            str(counts.get("websocket", 0)),
            str(counts.get("polling", 0)),
            str(counts.get("upgrading", 0)),
            socketio_path,
            cwd=JS_CLIENT_SCRIPT.parents[2],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(json.loads(line))

    def connects(self) -> Counter[str]:
        return Counter(event["client"] for event in self.events if event["event"] == "connect")

    def upgraded(self) -> set[str]:
        return {event["client"] for event in self.events if event["event"] == "upgrade"}

    def disconnect_reasons(self) -> list[str]:
        return [event["reason"] for event in self.events if event["event"] == "disconnect"]

    def connect_errors(self) -> list[str]:
        return [event["reason"] for event in self.events if event["event"] == "connect_error"]

    def latest_counts(self) -> dict[str, int]:
        """Each client's last ``viewerCountUpdate``."""
        return {event["client"]: event["viewerCount"] for event in self.events if event["event"] == "update"}

    async def close(self) -> None:
        """Closes stdin: the script disconnects every client and exits."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), WAIT)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await self._reader
