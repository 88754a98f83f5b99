"""A real redis-server on a free loopback port, and gateway nodes on it, for the gateway's scale-out tests.

Debian's ``redis-server`` is installed by ``scripts/setup`` when it can be (as root). Where it is
missing the tests are skipped with a reason that says so; in CI (``CI=true``) they fail instead,
because CI must run them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from service_common.timing import SnapshotTiming
from testkit import waiting
from tests.conftest import ingest_config, sqlite_ingest
from tests.fault_support import ServiceProcess, metrics, service
from tests.gateway_support import Viewer
from tests.support import TEST_KEY, IngestClient

# Bounds how long a broken start or stop hangs; a healthy redis-server answers within milliseconds.
START_TIMEOUT = 10.0
# Bounds each wait on the gateway nodes (other processes: polled, never slept on blindly).
NODE_WAIT = 20.0


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

    def start(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                *options,
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


class RedisClusterServers:
    """A real 3-master Redis Cluster on loopback ports: three ``redis-server --cluster-enabled yes``,
    joined by ``redis-cli --cluster create``. No replicas, no persistence."""

    MASTERS = 3

    def __init__(self, binary: str, workdir: Path) -> None:
        self.servers = [RedisServer(binary, workdir / f"cluster-{index}") for index in range(self.MASTERS)]
        self.cli = shutil.which("redis-cli") or str(Path(binary).with_name("redis-cli"))

    @property
    def url(self) -> str:
        """One node's URL: a cluster client discovers the others from it."""
        return self.servers[0].url

    def start(self) -> None:
        for server in self.servers:
            server.workdir.mkdir(parents=True, exist_ok=True)
            server.start(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{server.port}.conf",
                "--cluster-node-timeout",
                "5000",
                # The cluster bus listens on its own free port (by default the port + 10000, which
                # may be taken or beyond 65535).
                "--cluster-port",
                str(free_port()),
            )
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{server.port}" for server in self.servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=START_TIMEOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        # The slots are assigned at once; every node must agree the cluster is up (gossip): poll, bounded.
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in self._ask(server.port, b"CLUSTER INFO") for server in self.servers):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the Redis Cluster did not come up within {START_TIMEOUT} s")

    def flush(self) -> None:
        for server in self.servers:
            self._ask(server.port, b"FLUSHALL")

    @staticmethod
    def _ask(port: int, command: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as conn:
            conn.sendall(command + b"\r\n")
            return conn.recv(65536)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@dataclass(frozen=True)
class RedisBackend:
    """Where a parametrized test's gateway state lives: one redis-server, or a 3-master Redis Cluster."""

    url: str
    cluster: bool

    def client(self) -> aioredis.Redis | RedisCluster:
        """A client of the backend's kind (the caller closes it)."""
        return RedisCluster.from_url(self.url) if self.cluster else aioredis.Redis.from_url(self.url)


@pytest.fixture(params=["redis", "cluster"])
def redis_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisBackend]:
    """Each test twice: on a fresh redis-server, then on the session's Redis Cluster (``redis_cluster``
    in ``tests/conftest.py``: one per test process), flushed."""
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        yield RedisBackend(cluster.url, True)
        return
    server = RedisServer(redis_server_binary(), tmp_path)
    server.start()
    try:
        yield RedisBackend(server.url, False)
    finally:
        server.stop()


# --- gateway nodes on Redis (the cluster tests) --------------------------------------------------------


async def poll(condition: Callable[[], Awaitable[bool]], what: str, bound: float = NODE_WAIT) -> float:
    """Waits until ``condition`` (of another process: no event to await) holds; the seconds it took."""
    return await waiting.poll(condition, what, within=bound)


async def readyz(http: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
        return answer.status, await answer.json()


async def ready(http: aiohttp.ClientSession, port: int) -> bool:
    return (await readyz(http, port))[0] == 200


async def not_ready(http: aiohttp.ClientSession, port: int) -> bool:
    return (await readyz(http, port))[0] == 503


def latest(viewer: Viewer) -> tuple[int, int] | None:
    if not viewer.updates:
        return None
    last = viewer.updates[-1]
    return last["viewerCount"], last["uniqueViewers"]


def truth(viewer_ids: Iterable[str | None]) -> tuple[int, int]:
    """``(viewerCount, uniqueViewers)`` of sockets with these viewer ids (None: anonymous)."""
    listed = list(viewer_ids)
    return len(listed), len({v for v in listed if v is not None}) + sum(1 for v in listed if v is None)


@asynccontextmanager
async def cluster_ingest(
    tmp_path: Path, timing: SnapshotTiming, auction_id: str
) -> AsyncIterator[tuple[int, str]]:
    """The real ingest service on SQLite with analytics on for ``auction_id``: its port and SQLite path."""
    store_path = str(tmp_path / "analytics.sqlite3")
    async with sqlite_ingest(ingest_config(sqlite_path=store_path, timing=timing)) as (ingest, _):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
            await IngestClient(channel, TEST_KEY).set_analytics(auction_id, True)
        yield ingest.port, store_path


def node_env(
    index: int,
    *,
    ingest_port: int,
    redis_url: str,
    tmp_path: Path,
    timing: SnapshotTiming,
    lease_seconds: float,
) -> dict[str, str]:
    """The environment of gateway node ``index`` (``node-{index}``) of a test cluster."""
    return {
        **os.environ,
        "INTERNAL_API_KEY": TEST_KEY,
        "INGEST_TARGET": f"127.0.0.1:{ingest_port}",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        "GATEWAY_ID": f"node-{index}",
        "OUTBOX_PATH": str(tmp_path / f"outbox-{index}.sqlite3"),
        "SNAPSHOT_INTERVAL_SECONDS": str(timing.snapshot_interval_seconds),
        "SAMPLE_INTERVAL_SECONDS": str(timing.sample_interval_seconds),
        "COUNT_UPDATE_INTERVAL_MS": "100",
        "REDIS_URL": redis_url,
        "GATEWAY_NODE_LEASE_SECONDS": str(lease_seconds),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }


@dataclass(frozen=True)
class ClusterRig:
    """What a cluster test's nodes share: the ingest service's SQLite file, an HTTP client, their env."""

    store_path: str
    http: aiohttp.ClientSession
    env: Callable[[int], dict[str, str]]


async def cluster_rig(
    stack: AsyncExitStack,
    tmp_path: Path,
    redis_url: str,
    timing: SnapshotTiming,
    lease_seconds: float,
    auction_id: str,
) -> ClusterRig:
    """Starts the ingest service (analytics on for ``auction_id``) and an HTTP client, closed by ``stack``."""
    ingest_port, store_path = await stack.enter_async_context(cluster_ingest(tmp_path, timing, auction_id))
    http = await stack.enter_async_context(aiohttp.ClientSession())
    env = functools.partial(
        node_env,
        ingest_port=ingest_port,
        redis_url=redis_url,
        tmp_path=tmp_path,
        timing=timing,
        lease_seconds=lease_seconds,
    )
    return ClusterRig(store_path, http, env)


async def start_nodes(stack: AsyncExitStack, envs: list[dict[str, str]]) -> list[tuple[ServiceProcess, int]]:
    """Starts ``python -m socket_gateway`` for each environment at once; each process and its port.

    The processes are killed when ``stack`` closes (a test stops them gracefully itself when it must).
    """
    nodes = [await stack.enter_async_context(service("socket_gateway", env)) for env in envs]
    entries = await asyncio.gather(*(node.log_entry("Socket gateway listening") for node in nodes))
    return [(node, entry["port"]) for node, entry in zip(nodes, entries, strict=True)]


def sent_duplicates(nodes: Iterable[ServiceProcess]) -> int:
    """Snapshots the ingest service answered DUPLICATE to, over every node's "Analytics sent" log lines."""
    return sum(entry.get("duplicate", 0) for node in nodes for entry in node.entries("Analytics sent"))


async def is_sampler_leader(http: aiohttp.ClientSession, port: int) -> bool:
    return (await metrics(http, port)).get("gateway_sampler_leader") == 1
