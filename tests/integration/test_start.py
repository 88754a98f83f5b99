"""``scripts/start`` needs only Python: no npm, no chromium, no redis-server, no apt-get, no root.

The start runs with a PATH holding nothing but the few programs the two scripts call (bash, the
coreutils below and a python3): chromium, redis-server, npm and apt-get are not on it, whatever this
machine has installed. The repository's ``.venv`` is already set up (scripts/check runs the full
setup before the tests, which also satisfies ``scripts/setup --runtime``), so this checks that the
start asks for nothing more; a fresh clone's first start, which also installs, is too slow for a
test (minutes of pip) and is checked by hand.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import aiohttp

from tests.stack_support import (
    REPO,
    START_TIMEOUT,
    drain,
    free_ports,
    read_until_banner,
    stack_test_environment,
    stop_stack,
)

# Everything scripts/start and scripts/setup --runtime run, python3 aside.
TOOLS = ("bash", "dirname", "cat", "sha256sum", "cut")
ABSENT = ("chromium", "redis-server", "npm", "node", "apt-get")


def minimal_path(bin_dir: Path) -> str:
    """A directory of links to ``TOOLS`` and to a python3 (this interpreter's own binary)."""
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is needed to run scripts/start"
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    for program in ABSENT:
        assert shutil.which(program, path=str(bin_dir)) is None
    return str(bin_dir)


async def test_start_runs_the_services_with_only_python_on_the_path(tmp_path: Path) -> None:
    ports = free_ports()
    environment = stack_test_environment(ports, PATH=minimal_path(tmp_path / "bin"))
    environment.pop("VIRTUAL_ENV", None)
    process = await asyncio.create_subprocess_exec(
        "scripts/start",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=REPO,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        await asyncio.wait_for(read_until_banner(process.stdout, lines), START_TIMEOUT)
        draining = asyncio.create_task(drain(process.stdout, lines))
        async with aiohttp.ClientSession() as http:
            for port in (ports["GATEWAY_PORT"], ports["GRAPHQL_PORT"]):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    assert answer.status == 200
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), START_TIMEOUT) == 0, "".join(lines[-30:])
        await draining
    finally:
        await stop_stack(process)
    log = "".join(lines)
    for program in ("chromium", "apt-get", "npm"):
        assert program not in log, log
