"""Helpers for the tests of ``python -m local_stack`` and ``scripts/start``: real processes on free ports.

local_stack takes fixed ports from its environment (each service must know the others' addresses
before it starts), so the tests find free ones by binding port 0 and releasing it: another process
could take one in between, which would fail a test loudly, never pass it wrongly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Three services starting on a 2-core machine shared with other tests.
START_TIMEOUT = 30.0
PORT_VARIABLES = ("INGEST_PORT", "INGEST_METRICS_PORT", "GATEWAY_PORT", "GRAPHQL_PORT", "GATEWAY_GRPC_PORT")
# What local_stack fills in itself must not leak in from the environment running the tests.
STACK_VARIABLES = {
    "INTERNAL_API_KEY",
    "GRAPHQL_JWT_SECRET",
    "INGEST_TARGET",
    "ALLOWED_ORIGIN",
    "DASHBOARD_GATEWAY_URL",
    "GATEWAY_GRPC_TARGET",
    "ANALYTICS_SQLITE_PATH",
    "OUTBOX_PATH",
    "MONGODB_URI",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports() -> dict[str, str]:
    """A free port for each service, as local_stack's port variables."""
    return {name: str(free_port()) for name in PORT_VARIABLES}


def stack_test_environment(ports: Mapping[str, str], **extra: str) -> dict[str, str]:
    """This process's environment without what local_stack fills in, plus ``ports`` and ``extra``."""
    environment = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    environment.update(ports)
    environment.update(extra)
    return environment


async def start_stack(
    data_dir: Path, ports: Mapping[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """Starts ``python -m local_stack`` on free ports; returns the process and the ports it was given.

    Its log (stderr, with the children's lines) is ``process.stderr``.
    """
    chosen = dict(ports) if ports is not None else free_ports()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local_stack",
        "--data-dir",
        str(data_dir),
        cwd=REPO,
        env=stack_test_environment(chosen),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return process, chosen


async def read_until(stream: asyncio.StreamReader, lines: list[str], prefix: str) -> str:
    """Reads a log into ``lines`` until a line that starts (after blanks) with ``prefix``; returns it."""
    async for raw in stream:
        line = raw.decode(errors="replace")
        lines.append(line)
        if line.strip().startswith(prefix):
            return line
    raise AssertionError(f"the log ended before a line starting {prefix!r}:\n" + "".join(lines[-30:]))


async def read_until_banner(stream: asyncio.StreamReader, lines: list[str]) -> str:
    """Reads local_stack's log into ``lines`` until its dashboard line, and returns that line."""
    return await read_until(stream, lines, "Dashboard ")


async def drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
    """Reads the rest of a log into ``lines``, so a child's output never fills its pipe."""
    async for raw in stream:
        lines.append(raw.decode(errors="replace"))


async def stop_stack(process: asyncio.subprocess.Process) -> None:
    """Stops local_stack if it still runs: gracefully (SIGINT), so it stops its services in order."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


def children(parent_pid: int) -> dict[int, list[str]]:
    """The processes whose parent is ``parent_pid``, each with its command line."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (command) state ppid ...": the command may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        if int(fields[1]) == parent_pid:
            found[int(entry.name)] = [argument.decode() for argument in arguments if argument]
    return found


def service_pids(parent_pid: int) -> dict[str, int]:
    """local_stack's services by module, each with its pid (local_stack.child has exec'd into it)."""
    return {
        command[command.index("-m") + 1]: pid
        for pid, command in children(parent_pid).items()
        if "-m" in command
    }


class ProcessLog:
    """A child process's log (local_stack's, simulate's), read as it arrives so the pipe never fills."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._arrived = asyncio.Condition()
        self._ended = False
        self._reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            async with self._arrived:
                self.lines.append(raw.decode(errors="replace"))
                self._arrived.notify_all()
        async with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    async def line_with(self, text: str, after: int = 0) -> int:
        """Waits for a line containing ``text`` (from line ``after`` on); returns its index."""

        def found() -> int | None:
            return next((i for i in range(after, len(self.lines)) if text in self.lines[i]), None)

        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: found() is not None or self._ended), START_TIMEOUT
            )
        index = found()
        assert index is not None, f"the log ended without {text!r}:\n" + "".join(self.lines[-30:])
        return index

    async def ended(self) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), START_TIMEOUT)
