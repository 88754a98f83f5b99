"""``python -m local_stack`` as a real process: it starts the three services, says where the dashboard
is, and stops them all on Ctrl-C (SIGINT) with exit code 0; killed outright (SIGKILL), it leaves none
of them running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from local_stack import child
from tests.stack_support import (
    REPO,
    START_TIMEOUT,
    ProcessLog,
    drain,
    free_ports,
    read_until,
    read_until_banner,
    service_pids,
    start_stack,
    stop_stack,
)

# SIGTERM from the kernel to each service, then its graceful shutdown (seen: about 1 s).
KILLED_STOP_TIMEOUT = 10.0
SERVICES = ["graphql_api", "ingest_service", "socket_gateway"]


async def test_starts_everything_serves_the_dashboard_and_stops_cleanly(tmp_path: Path) -> None:
    process, ports = await start_stack(tmp_path / "data")
    assert process.stderr is not None
    lines: list[str] = []
    try:
        banner_line = await asyncio.wait_for(read_until_banner(process.stderr, lines), START_TIMEOUT)
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

            # The banner's command mints a seller's token for this stack, with its JWT secret.
            await asyncio.wait_for(read_until(process.stderr, lines, "Ctrl-C stops"), START_TIMEOUT)
            draining = asyncio.create_task(drain(process.stderr, lines))
            seller = await mint_token_as_the_banner_says("".join(lines))
            headers = {"Authorization": f"Bearer {seller}"}
            async with http.post(f"http://127.0.0.1:{port}/graphql", json=query, headers=headers) as answer:
                body = await answer.json()
            assert body == {"data": {"auction": {"settings": {"enableViewerAnalytics": False}}}}, body

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), START_TIMEOUT) == 0
        await draining
        log = "".join(lines)
        for stopped in ("GraphQL API stopped", "Socket gateway stopped", "Ingest service stopped"):
            assert stopped in log
        # Stopped in reverse order: the gateway flushes to the ingest service before it goes.
        assert log.index("Socket gateway stopped") < log.index("Ingest service stopped")
    finally:
        # A failed assertion stops the stack gracefully: killed outright, local_stack could not stop
        # its services in order, and on a platform without the parent-death signal not at all.
        await stop_stack(process)


async def mint_token_as_the_banner_says(log: str) -> str:
    """Runs the dev_token command the banner prints (with this interpreter) and returns its token."""
    (command,) = [line.strip() for line in log.splitlines() if "graphql_api.dev_token" in line]
    assignment, python, *arguments = shlex.split(command)
    name, _, secret = assignment.partition("=")
    assert (name, python) == ("GRAPHQL_JWT_SECRET", ".venv/bin/python"), command
    minted = await asyncio.create_subprocess_exec(
        sys.executable,
        *arguments,
        cwd=REPO,
        env={**os.environ, "GRAPHQL_JWT_SECRET": secret},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(minted.communicate(), START_TIMEOUT)
    assert minted.returncode == 0
    return out.decode().strip()


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
        # The services themselves, not local_stack.child: it has replaced itself with the service.
        pids = service_pids(process.pid)
        assert sorted(pids) == SERVICES, pids
        services = {module: os.pidfd_open(pid) for module, pid in pids.items()}

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


async def test_a_service_that_crashes_is_named_and_restarted_while_the_others_keep_running(
    tmp_path: Path,
) -> None:
    process, ports = await start_stack(tmp_path / "data")
    assert process.stderr is not None
    log = ProcessLog(process.stderr)
    try:
        banner = await log.line_with("Viewer Analytics is running")
        await log.line_with("is restarted (after 1 s", after=banner)
        before = service_pids(process.pid)
        assert sorted(before) == SERVICES, before

        os.kill(before["socket_gateway"], signal.SIGKILL)
        named = await log.line_with("local_stack: socket_gateway was killed by SIGKILL; its last log lines:")
        # Its own last lines follow, without the relay's prefix, then when it comes back.
        shown = log.lines[named + 1]
        assert shown.startswith("    "), shown
        assert "socket_gateway" in shown, shown
        await log.line_with("local_stack: restarting socket_gateway in", after=named)
        await log.line_with("local_stack: socket_gateway is running again (pid", after=named)

        after = service_pids(process.pid)
        assert after["socket_gateway"] != before["socket_gateway"]
        assert (after["ingest_service"], after["graphql_api"]) == (
            before["ingest_service"],
            before["graphql_api"],
        ), "the other two kept running"
        async with aiohttp.ClientSession() as http:
            for port in (ports["GATEWAY_PORT"], ports["GRAPHQL_PORT"]):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    assert answer.status == 200
        assert process.returncode is None

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), START_TIMEOUT) == 0
        await log.ended()
        assert "Socket gateway stopped" in log.text
    finally:
        await stop_stack(process)


async def test_a_service_that_cannot_start_is_named_at_once_and_another_process_on_its_port_does_not_count(
    tmp_path: Path,
) -> None:
    """Another process holds the gateway's port and even answers ``/healthz`` there: local_stack's
    own gateway cannot bind it and exits. local_stack says so, with the gateway's last lines, never
    that the stack runs, and stops the two others."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    impostor = web.Application()
    impostor.router.add_get("/healthz", healthz)
    runner = web.AppRunner(impostor)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ports = {**free_ports(), "GATEWAY_PORT": str(runner.addresses[0][1])}
    process, _ = await start_stack(tmp_path / "data", ports)
    assert process.stderr is not None
    log = ProcessLog(process.stderr)
    try:
        assert await asyncio.wait_for(process.wait(), START_TIMEOUT) == 1
        await log.ended()
        text = log.text
        assert "Viewer Analytics is running" not in text
        named = await log.line_with("local_stack: socket_gateway exited with code")
        assert "its last log lines:" in log.lines[named]
        shown = "".join(line for line in log.lines[named + 1 :] if line.startswith("    "))
        # The gateway's own words for it (service_common.service_process).
        assert "already in use" in shown, shown
        # (local_stack waits for each of the others to exit before it does; one still importing when
        # it gets SIGTERM stops without a "stopped" line, so the test does not look for those.)
        assert "stopping the others" in text
    finally:
        await stop_stack(process)
        await runner.cleanup()
