"""Each service's one start-up line says what runs where with what enabled, in both log formats.

Every service runs as a real ``python -m`` process on port 0 with settings other than the defaults,
so the line is seen to carry the values the process runs with, not constants.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_support import base_env, service
from tests.graphql_support import JWT_SECRET

TIMING = {"SNAPSHOT_INTERVAL_SECONDS": "30", "SAMPLE_INTERVAL_SECONDS": "3"}
EXPECTED_TIMING = {"snapshot_interval_seconds": 30, "sample_interval_seconds": 3}


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A bound but never listening port: what the gateway and the API are pointed at (they start
    without the ingest service, and the gateway without Redis)."""
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        yield dead.getsockname()[1]


def services(tmp_path: Path, dead: int) -> dict[str, tuple[str, dict[str, str], dict[str, object]]]:
    """Per service: its module, its environment and the fields its start-up line must carry."""
    sqlite_path = str(tmp_path / "analytics.sqlite3")
    outbox_path = str(tmp_path / "outbox.sqlite3")
    target = f"127.0.0.1:{dead}"
    return {
        "Ingest service listening": (
            "ingest_service",
            {
                "INGEST_HOST": "127.0.0.1",
                "INGEST_PORT": "0",
                "ANALYTICS_SQLITE_PATH": sqlite_path,
                "VIEWER_ANALYTICS_RETENTION_DAYS": "30",
                **TIMING,
            },
            {
                "store": f"sqlite:{sqlite_path}",
                "analytics_flags": "sqlite:auction_settings",
                "retention_days": 30,
                "redis": "off",
                **EXPECTED_TIMING,
            },
        ),
        "Socket gateway listening": (
            "socket_gateway",
            {
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": "0",
                "GATEWAY_GRPC_PORT": "0",
                "OUTBOX_PATH": outbox_path,
                "INGEST_TARGET": target,
                "REDIS_URL": f"redis://127.0.0.1:{dead}/0",
                **TIMING,
            },
            {
                "outbox": outbox_path,
                "ingest_target": target,
                "socketio_path": "/socket.io/",
                "redis": "on",
                **EXPECTED_TIMING,
            },
        ),
        "GraphQL API listening": (
            "graphql_api",
            {
                "GRAPHQL_HOST": "127.0.0.1",
                "GRAPHQL_PORT": "0",
                "GRAPHQL_JWT_SECRET": JWT_SECRET,
                "INGEST_TARGET": target,
                "VIEWER_ANALYTICS_RETENTION_DAYS": "30",
                **TIMING,
            },
            {
                "store": f"ingest:{target}",
                "ingest_target": target,
                "retention_days": 30,
                "redis": "off",
                **EXPECTED_TIMING,
            },
        ),
    }


MESSAGES = ["Ingest service listening", "Socket gateway listening", "GraphQL API listening"]


@pytest.mark.parametrize("message", MESSAGES)
async def test_the_start_up_line_in_json(tmp_path: Path, dead_port: int, message: str) -> None:
    module, env, expected = services(tmp_path, dead_port)[message]
    async with service(module, base_env(LOG_FORMAT="json", **env)) as process:
        entry = await process.log_entry(message)
        assert isinstance(entry["port"], int)
        assert entry["port"] > 0
        assert {key: entry.get(key) for key in expected} == expected
        # One line says it: no other line of the start-up repeats the settings.
        assert len(process.entries(message)) == 1


@pytest.mark.parametrize("message", MESSAGES)
async def test_the_start_up_line_in_text(tmp_path: Path, dead_port: int, message: str) -> None:
    module, env, expected = services(tmp_path, dead_port)[message]
    async with service(module, base_env(LOG_FORMAT="text", **env)) as process:
        line = str((await process.line_with(message))["message"])
        # A text line, not JSON: "<time> INFO    <logger>: <message> key=value ...".
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        assert f": {message} " in line
        for key, value in expected.items():
            assert f" {key}={value}" in line, (key, line)
        port = int(line.split(" port=")[1].split()[0])
        assert port > 0
