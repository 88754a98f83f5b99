"""``python -m local_stack`` as a real process: it starts the three services, says where the dashboard
is, and stops them all on Ctrl-C (SIGINT) with exit code 0; killed outright (SIGKILL), it leaves none
of them running.

local_stack takes fixed ports from its environment (each service must know the others' addresses
before it starts), so the test finds free ones by binding port 0 and releasing it: another process
could take one in between, which would fail this test loudly, never pass it wrongly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from local_stack import child

REPO = Path(__file__).resolve().parents[2]
# Three services starting on a 2-core machine shared with other tests.
START_TIMEOUT = 30.0
# SIGTERM from the kernel to each service, then its graceful shutdown (seen: about 1 s).
KILLED_STOP_TIMEOUT = 10.0
SERVICES = ["graphql_api", "ingest_service", "socket_gateway"]
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


async def start_stack(data_dir: Path) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """Starts ``python -m local_stack`` on free ports; returns the process and the ports it was given."""
    ports = {name: str(free_port()) for name in ("INGEST_PORT", "GATEWAY_PORT", "GRAPHQL_PORT")}
    # What local_stack fills in itself must not leak in from the environment running the tests.
    environment = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local_stack",
        "--data-dir",
        str(data_dir),
        cwd=REPO,
        env={**environment, **ports},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return process, ports


async def read_until_banner(stream: asyncio.StreamReader, lines: list[str]) -> str:
    """Reads local_stack's log into ``lines`` until its dashboard line, and returns that line."""
    async for raw in stream:
        line = raw.decode(errors="replace")
        lines.append(line)
        if line.strip().startswith("Dashboard "):
            return line
    raise AssertionError("local_stack exited before its banner:\n" + "".join(lines[-30:]))


async def stop_stack(process: asyncio.subprocess.Process) -> None:
    """Stops local_stack if it still runs: gracefully (SIGINT), so it stops its services in order."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_starts_everything_serves_the_dashboard_and_stops_cleanly(tmp_path: Path) -> None:
    process, ports = await start_stack(tmp_path / "data")
    assert process.stderr is not None
    lines: list[str] = []
    try:
        banner_line = await asyncio.wait_for(read_until_banner(process.stderr, lines), START_TIMEOUT)
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
        # A failed assertion stops the stack gracefully: killed outright, local_stack could not stop
        # its services in order, and on a platform without the parent-death signal not at all.
        await stop_stack(process)


@pytest.mark.skipif(not child.SUPPORTED, reason=child.UNSUPPORTED_REASON)
async def test_killed_outright_it_leaves_no_service_running(tmp_path: Path) -> None:
    process, _ = await start_stack(tmp_path / "data")
    assert process.stderr is not None
    lines: list[str] = []
    # pidfds, opened while the services are still local_stack's children (their pids cannot be
    # reused yet); one becomes readable when its process has exited, whoever its parent is by then.
    services: dict[str, int] = {}
    try:
        await asyncio.wait_for(read_until_banner(process.stderr, lines), START_TIMEOUT)
        children = _children(process.pid)
        # The services themselves, not local_stack.child: it has replaced itself with the service.
        modules = {
            pid: command[command.index("-m") + 1] for pid, command in children.items() if "-m" in command
        }
        assert sorted(modules.values()) == SERVICES, children
        services = {module: os.pidfd_open(pid) for pid, module in modules.items()}

        process.kill()
        await process.wait()
        exits = {asyncio.create_task(_exited(pidfd)): module for module, pidfd in services.items()}
        _, running = await asyncio.wait(exits, timeout=KILLED_STOP_TIMEOUT)
        for task in running:
            task.cancel()
        still_running = sorted(exits[task] for task in running)
        assert not still_running, f"{KILLED_STOP_TIMEOUT} s after local_stack was killed"
    finally:
        await stop_stack(process)
        for pidfd in services.values():
            # Only if the assertion above failed: the services of this test's own stack, on its
            # temporary data, so killing them loses nothing.
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)


def _children(parent_pid: int) -> dict[int, list[str]]:
    """The processes whose parent is ``parent_pid``, each with its command line."""
    children: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (command) state ppid ...": the command may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue  # exited while we looked
        if int(fields[1]) == parent_pid:
            children[int(entry.name)] = [argument.decode() for argument in arguments if argument]
    return children


async def _exited(pidfd: int) -> None:
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        loop.remove_reader(pidfd)
        exited.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)


async def _drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for raw in stream:
        lines.append(raw.decode(errors="replace"))
