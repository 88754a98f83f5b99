"""A real redis-server on a free loopback port for the gateway's scale-out tests.

Debian's ``redis-server`` is installed by ``scripts/setup`` when it can be (as root). Where it is
missing the tests are skipped with a reason that says so; in CI (``CI=true``) they fail instead,
because CI must run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Bounds how long a broken start or stop hangs; a healthy redis-server answers within milliseconds.
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """The path of ``redis-server``, or a loud skip (a failure in CI) when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = (
            "SKIPPED: redis-server is not installed, so the gateway's Redis (REDIS_URL) tests did not run; "
            "install Debian's redis-server (scripts/setup does it as root)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason.replace("SKIPPED", "CI must run the Redis tests"), pytrace=False)
        pytest.skip(reason)
    return binary


class RedisServer:
    """One ``redis-server`` process without persistence; ``restart`` keeps its port (an outage)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        # Nothing signals readiness but the socket itself: bounded polling.
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {START_TIMEOUT} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, stopped after it."""
    server = RedisServer(redis_server_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
