"""``python -m <service> --help`` as a real process, and the ``.env`` file every service reads.

``--help`` prints every variable the service's ``from_env`` reads, with the default it really uses,
and exits 0 without reading the configuration (here: an environment without even the required key).
Which variables ``from_env`` reads is recorded by a fake environment that notes every lookup; that
the printed default is the one used is checked by setting each variable to it and comparing the
configuration with the one read without it. ``.env.example`` must list the same variables with the
same defaults.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from graphql_api.config import GraphQLConfig
from ingest_service.config import IngestConfig
from socket_gateway.config import GatewayConfig
from testkit.processes import run_to_exit
from tests.fault_support import FAULT_WAIT, REPO
from tests.graphql_support import JWT_SECRET
from tests.support import TEST_KEY

SERVICES: dict[str, Callable[[Mapping[str, str]], object]] = {
    "ingest_service": IngestConfig.from_env,
    "socket_gateway": GatewayConfig.from_env,
    "graphql_api": GraphQLConfig.from_env,
}
REQUIRED = {"INTERNAL_API_KEY": TEST_KEY, "GRAPHQL_JWT_SECRET": JWT_SECRET}
# Read by run_service itself, before any configuration.
RUN_SERVICE_VARIABLES = {"ENV_FILE"}
_HELP_LINE = re.compile(r"^  ([A-Z][A-Z0-9_]*)=(.*)$")


class RecordingEnv(Mapping[str, str]):
    """An environment that notes the name of every variable looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.looked_up.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def bare_env(**variables: str) -> dict[str, str]:
    """Only what starts Python from this checkout: none of the services' variables."""
    env = {
        name: os.environ[name] for name in ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV") if name in os.environ
    }
    env.update(variables)
    return env


async def run(module: str, *arguments: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    return await run_to_exit(module, *arguments, env=env, cwd=cwd, within=FAULT_WAIT)


def help_defaults(text: str) -> dict[str, str]:
    """``NAME -> default`` from the help's ``  NAME=default`` lines; ``(required)`` stands for no default."""
    defaults = {}
    for line in text.splitlines():
        match = _HELP_LINE.match(line)
        if match:
            defaults[match[1]] = match[2].strip()
    return defaults


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """Each service's ``--help``, run once for the module, in an empty directory and environment."""
    where = tmp_path_factory.mktemp("help")

    async def all_helps() -> list[tuple[int, str, str]]:
        return await asyncio.gather(
            *(run(module, "--help", cwd=where, env=bare_env()) for module in SERVICES)
        )

    return dict(zip(SERVICES, asyncio.run(all_helps()), strict=True))


@pytest.mark.parametrize("module", SERVICES)
def test_help_prints_usage_and_exits_0_without_reading_the_configuration(
    helps: dict[str, tuple[int, str, str]], module: str
) -> None:
    code, out, err = helps[module]
    assert (code, err) == (0, ""), err
    assert out.startswith(f"usage: python -m {module}")
    assert "INTERNAL_API_KEY= (required)" in out
    assert ".env in the current directory" in out


@pytest.mark.parametrize("module", SERVICES)
def test_help_lists_every_variable_read_with_the_default_used(
    helps: dict[str, tuple[int, str, str]], module: str
) -> None:
    from_env = SERVICES[module]
    shown = help_defaults(helps[module][1])
    recording = RecordingEnv(REQUIRED)
    baseline = from_env(recording)
    assert recording.looked_up - set(shown) == set(), "read but not in --help"
    assert set(shown) - recording.looked_up - RUN_SERVICE_VARIABLES == set(), "in --help but never read"
    for name, default in shown.items():
        if default == "(required)" or name in RUN_SERVICE_VARIABLES:
            continue
        assert from_env({**REQUIRED, name: default}) == baseline, f"{name}={default} is not its default"


def test_env_example_lists_every_variable_with_its_default(helps: dict[str, tuple[int, str, str]]) -> None:
    declared: dict[str, str] = {}
    for module in SERVICES:
        for name, default in help_defaults(helps[module][1]).items():
            if name not in RUN_SERVICE_VARIABLES:
                declared[name] = "" if default == "(required)" else default
    example = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name] = value
    assert example == declared


def test_env_file_fills_in_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    # The file's SAMPLE_INTERVAL_SECONDS is read (and refused) only if the file is read at all; the
    # environment's SNAPSHOT_INTERVAL_SECONDS wins over the file's invalid one.
    (tmp_path / ".env").write_text(
        f"INTERNAL_API_KEY={TEST_KEY}\nSNAPSHOT_INTERVAL_SECONDS=not-a-number\nSAMPLE_INTERVAL_SECONDS=120\n"
    )
    code, _, err = asyncio.run(
        run("ingest_service", cwd=tmp_path, env=bare_env(SNAPSHOT_INTERVAL_SECONDS="60"))
    )
    assert code == 2
    assert err == (
        "ingest_service: configuration error: SAMPLE_INTERVAL_SECONDS: must not exceed "
        "SNAPSHOT_INTERVAL_SECONDS (60), got 120\n"
    )


def test_env_file_named_by_env_file_starts_the_service(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    with holder:
        busy = holder.getsockname()[1]
        settings = tmp_path / "ingest.env"
        # The file's busy port loses to the environment's; everything else comes from the file.
        settings.write_text(
            f"INTERNAL_API_KEY={TEST_KEY}\nINGEST_PORT={busy}\nLOG_FORMAT=text\n"
            f"ANALYTICS_SQLITE_PATH={tmp_path / 'ingest.sqlite3'}\n"
        )
        asyncio.run(_starts_and_stops(tmp_path, bare_env(ENV_FILE=str(settings), INGEST_PORT="0")))
    assert (tmp_path / "ingest.sqlite3").exists()


async def _starts_and_stops(cwd: Path, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingest_service",
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(_line_with(process.stderr, "Ingest service listening"), FAULT_WAIT)
        # LOG_FORMAT=text came from the file: the line is text, not JSON.
        assert not line.startswith("{")
        assert process.returncode is None
        process.terminate()
        await asyncio.wait_for(process.wait(), FAULT_WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError(f"the process ended its log before {text!r}")
        if text in raw.decode():
            return raw.decode()


def test_a_missing_env_file_that_was_named_is_a_configuration_error(tmp_path: Path) -> None:
    code, _, err = asyncio.run(
        run("socket_gateway", cwd=tmp_path, env=bare_env(ENV_FILE=str(tmp_path / "missing.env")))
    )
    assert (code, err) == (
        2,
        f"socket_gateway: configuration error: ENV_FILE: no such file: {tmp_path}/missing.env\n",
    )
