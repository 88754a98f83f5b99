"""Starting the services as real child processes: their JSON log lines collected as they arrive."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from testkit import measure

REPO = Path(__file__).resolve().parents[1]
# Bounds how long a process that never logs what is awaited, or never exits, is waited for.
PROCESS_WAIT = 30.0


async def spawn(
    module: str,
    env: Mapping[str, str],
    *,
    stderr: int | IO[bytes],
    stdout: int | IO[bytes] = asyncio.subprocess.DEVNULL,
    cpus: str | None = None,
    cwd: Path = REPO,
    python: str = sys.executable,
) -> asyncio.subprocess.Process:
    """Starts ``python -m <module>`` with exactly ``env``, pinned to ``cpus`` with ``taskset`` when given.

    Args:
        module: the service (``socket_gateway``, ``ingest_service``, ``graphql_api``) or any module.
        env: its whole environment.
        stderr: where its log goes: ``asyncio.subprocess.PIPE`` to read it, or a file (benchmarks that
            measure what it logs).
        stdout: where anything it prints goes (the services print nothing there).
        cpus: the CPUs to pin it to (benchmarks: ``"0"``), or None for any.
        cwd: where it runs (the repository root unless a test needs its own ``.env``).
        python: the interpreter (a benchmark may compare another one).
    """
    command = [python, "-m", module]
    if cpus is not None:
        taskset = shutil.which("taskset")
        if taskset is None:
            raise RuntimeError(f"taskset is needed to pin {module} to CPU {cpus} (or run it unpinned)")
        command = [taskset, "-c", cpus, *command]
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )


async def port_from_log(stream: asyncio.StreamReader, message: str, within: float = PROCESS_WAIT) -> int:
    """Reads a service's JSON log lines up to its start-up line (``message``); the port that line names.

    For a benchmark that only drains the rest, unread: collecting every line (:class:`ServiceProcess`)
    would cost the load client time.

    Raises:
        RuntimeError: the service ended its log first.
        TimeoutError: no such line within ``within`` seconds.
    """
    async with asyncio.timeout(within):
        while line := await stream.readline():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == message:
                return int(entry["port"])
    raise RuntimeError(f"the service exited before logging {message!r}")


class ServiceProcess:
    """``python -m <module>`` as a child process; its JSON log lines are collected as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.logs: list[dict[str, Any]] = []
        self._logged = asyncio.Condition()
        self._reader = asyncio.create_task(self._read_logs())

    @classmethod
    async def start(cls, module: str, env: Mapping[str, str], *, cpus: str | None = None) -> ServiceProcess:
        """:func:`spawn` from the repository root, its stderr read line by line as it comes."""
        return cls(await spawn(module, env, stderr=asyncio.subprocess.PIPE, cpus=cpus))

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
                PROCESS_WAIT,
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
                PROCESS_WAIT,
            )
        entry = found()
        assert entry is not None, f"process exited before logging {text!r}: {self.logs[-5:]}"
        return entry

    def rss_kib(self) -> int:
        """Resident set size of the process, from /proc (Linux)."""
        return measure.rss_kib(self.process.pid)

    async def listening_port(self, message: str) -> int:
        """Waits for the service's start-up line (``Socket gateway listening``...); the port it names."""
        return int((await self.log_entry(message))["port"])

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far, from /proc (Linux)."""
        return measure.cpu_seconds(self.process.pid)

    async def stop(self) -> int:
        """SIGTERM, as an operator stops it; its exit status (it is killed if it outlasts the bound)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await self.exited()
        except TimeoutError:
            await self.kill()
            raise

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.exited()

    async def exited(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), PROCESS_WAIT)
        await self._reader
        return code


@asynccontextmanager
async def service(
    module: str, env: Mapping[str, str], *, cpus: str | None = None
) -> AsyncIterator[ServiceProcess]:
    """:meth:`ServiceProcess.start`, killed on the way out whatever happened (tests stop it first when
    the way it stops is what they check)."""
    running = await ServiceProcess.start(module, env, cpus=cpus)
    try:
        yield running
    finally:
        await running.kill()


async def run_to_exit(
    module: str, *arguments: str, env: Mapping[str, str], cwd: Path = REPO, within: float = PROCESS_WAIT
) -> tuple[int, str, str]:
    """Runs ``python -m <module> <arguments>`` to its end: its exit status, stdout and stderr.

    For what a service does when it must not start (``--help``, a bad variable, a busy port); one that
    is still running after ``within`` seconds is killed and the wait fails.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *arguments,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")
