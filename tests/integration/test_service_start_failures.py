"""Each service as a real process refuses to start on a busy port or a bad variable: one line, exit 2.

The port is held by a plain listening socket of this test process. It sets ``SO_REUSEPORT``, as a
gRPC server does by default, so that a server that also asks for it (gRPC's default) would bind it
beside the holder and start, as a second ingest service did.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import processes
from tests.fault_support import FAULT_WAIT, base_env
from tests.graphql_support import JWT_SECRET

SERVICES = {
    "ingest_service": "INGEST_PORT",
    "graphql_api": "GRAPHQL_PORT",
    "socket_gateway": "GATEWAY_PORT",
}


def service_env(module: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {
        "ANALYTICS_SQLITE_PATH": str(tmp_path / "ingest.sqlite3"),
        "OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
        "GRAPHQL_JWT_SECRET": JWT_SECRET,
        # The services never reach this: they stop before serving.
        "INGEST_TARGET": "127.0.0.1:9",
        "GATEWAY_GRPC_PORT": "0",
        # The ports not under test are any free ones (the metrics port's case leaves the gRPC one).
        "INGEST_PORT": "0",
        "INGEST_METRICS_PORT": "0",
    }
    return base_env(**{**settings, **extra})


@pytest.fixture
def held_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    with holder:
        yield holder.getsockname()[1]


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def run_to_exit(module: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """The service's exit status and the lines it wrote to stderr."""
    code, _, stderr = await processes.run_to_exit(module, env=env, within=FAULT_WAIT)
    return code, stderr.splitlines()


# Each port a service listens on, by the variable that sets it.
PORTS = [*SERVICES.items(), ("ingest_service", "INGEST_METRICS_PORT")]


@pytest.mark.parametrize(("module", "variable"), PORTS)
async def test_a_busy_port_stops_the_service_naming_the_port(
    module: str, variable: str, held_port: int, tmp_path: Path
) -> None:
    code, lines = await run_to_exit(module, service_env(module, tmp_path, **{variable: str(held_port)}))
    assert code == 2, lines[-5:]
    naming = [line for line in lines if f"port {held_port} is already in use" in line]
    assert len(naming) == 1, lines
    assert variable in naming[0]
    assert not any("Traceback" in line for line in lines), lines
    # Refused before anything else was opened: a second gateway started by mistake beside a running
    # one must not open its outbox, start sending it or join its cluster on the way to the refusal.
    opened = files_in(tmp_path)
    assert opened == [], f"{module} opened {opened} before finding its port busy"


@pytest.mark.parametrize("module", list(SERVICES))
async def test_an_invalid_variable_stops_the_service_in_one_line(module: str, tmp_path: Path) -> None:
    variable = SERVICES[module]
    code, lines = await run_to_exit(module, service_env(module, tmp_path, **{variable: "eighty"}))
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{module}: configuration error: {variable}")


# The file each service keeps, by the variable that places it (the GraphQL API keeps none).
FILES = {"ingest_service": "ANALYTICS_SQLITE_PATH", "socket_gateway": "OUTBOX_PATH"}


@pytest.mark.parametrize("module", list(FILES))
async def test_a_file_whose_folder_cannot_be_made_stops_the_service_in_one_line(
    module: str, tmp_path: Path
) -> None:
    """The folder's place is taken by a plain file: the service cannot start, says so once, exit 1."""
    (tmp_path / "taken").write_text("a file, not a folder")
    variable = FILES[module]
    env = {**service_env(module, tmp_path), variable: str(tmp_path / "taken" / "data.sqlite3")}
    code, lines = await run_to_exit(module, env)
    assert code == 1, lines[-5:]
    assert not any("Traceback" in line for line in lines), lines
    critical = [line for line in lines if "CRITICAL" in line]
    assert len(critical) == 1, lines
    assert str(tmp_path / "taken") in critical[0]
