"""Start, health, reflection and graceful shutdown of the ingest service, in-process and as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2

from ingest_service.domain import AnalyticsRange, Snapshot, SnapshotOutcome
from ingest_service.server import create_ingest_server
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.internal_auth import internal_key_metadata
from service_common.prometheus import parse_samples
from service_common.viewer_snapshot import to_wire
from tests.conftest import RunningIngest, ingest_config
from tests.support import TEST_KEY, FakeClock, IngestClient, make_snapshot, outcome_names

REPO_ROOT = Path(__file__).resolve().parents[2]


class GatedStore(SqliteSnapshotStore):
    """The real SQLite store, except that a write waits for the test to open the gate: a fault
    injected at the storage boundary so that a batch is provably in flight during shutdown."""

    write_started: asyncio.Event
    gate: asyncio.Event

    async def insert_snapshots(self, snapshots: Sequence[Snapshot]) -> list[SnapshotOutcome]:
        self.write_started.set()
        await self.gate.wait()
        return await super().insert_snapshots(snapshots)


async def test_shutdown_finishes_the_batch_in_flight(tmp_path: Path, clock: FakeClock) -> None:
    config = ingest_config(sqlite_path=str(tmp_path / "a.sqlite3"))
    store = await GatedStore.open(config.sqlite_path, retention_days=90, clock=clock)
    assert isinstance(store, GatedStore)
    store.write_started, store.gate = asyncio.Event(), asyncio.Event()
    server = create_ingest_server(config, store, clock)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        client = IngestClient(channel)
        await client.set_analytics("in-flight", True)
        health_updates = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await health_updates.read()).status == health_pb2.HealthCheckResponse.SERVING

        stream = client.ingest.StreamSnapshots(metadata=client.metadata)
        snapshot = make_snapshot("in-flight", int(clock.now) - 60)
        await stream.write(ingest_pb2.StreamSnapshotsRequest(snapshots=[to_wire(snapshot)]))
        await store.write_started.wait()

        stopping = asyncio.create_task(server.stop(grace_seconds=10))
        assert (await health_updates.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # A watcher would hold the server for the whole grace period; a load balancer would hang up now.
        health_updates.cancel()
        assert not stopping.done(), "the server must wait for the batch in flight"

        store.gate.set()
        answer = await stream.read()
        assert outcome_names(answer.acks) == ["STORED"]
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stream.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.wait_for(stopping, timeout=10)
    finally:
        await channel.close()
        await store.close()

    reopened = await SqliteSnapshotStore.open(config.sqlite_path, retention_days=90, clock=clock)
    try:
        assert (await reopened.get_settings(["in-flight"]))["in-flight"].enable_viewer_analytics
        assert len(await reopened.query_points(AnalyticsRange("in-flight", None, None), 0)) == 1
    finally:
        await reopened.close()


async def test_reflection_lists_the_services(ingest: RunningIngest) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(ingest.channel)
    call = stub.ServerReflectionInfo(metadata=internal_key_metadata(TEST_KEY))
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()
    names = {service.name for service in response.list_services_response.service}
    assert {
        "viewer_analytics.v1.SnapshotIngestService",
        "viewer_analytics.v1.AuctionSettingsService",
        "viewer_analytics.v1.ViewerAnalyticsService",
        "grpc.health.v1.Health",
    } <= names


class IngestProcess:
    """``python -m ingest_service`` as a child process, with its JSON log lines on stderr."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[dict[str, object]] = []

    @classmethod
    async def start(cls, env: dict[str, str]) -> IngestProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest_service", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
        )
        return cls(process)

    async def wait_for_log(self, message: str) -> dict[str, object]:
        assert self.process.stderr is not None
        async with asyncio.timeout(20):
            while True:
                line = await self.process.stderr.readline()
                if not line:
                    raise AssertionError(f"process ended before logging {message!r}: {self.log}")
                entry: dict[str, object] = json.loads(line)
                self.log.append(entry)
                if entry["message"] == message:
                    return entry

    async def exit_code(self) -> int:
        assert self.process.stderr is not None
        async with asyncio.timeout(20):
            async for line in self.process.stderr:
                self.log.append(json.loads(line))
            return await self.process.wait()


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("INGEST_", "MONGODB_"))}
    env.update(
        INTERNAL_API_KEY=TEST_KEY,
        INGEST_PORT="0",
        ANALYTICS_SQLITE_PATH=str(tmp_path / "service.sqlite3"),
        LOG_FORMAT="json",
        LOG_LEVEL="info",
    )
    env.update(extra)
    return env


@pytest.fixture
async def running_process(tmp_path: Path) -> AsyncIterator[IngestProcess]:
    service = await IngestProcess.start(service_env(tmp_path))
    try:
        yield service
    finally:
        if service.process.returncode is None:
            service.process.kill()
            await service.process.wait()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_process_serves_and_exits_cleanly_on_a_stop_signal(
    running_process: IngestProcess, stop_signal: signal.Signals
) -> None:
    listening = await running_process.wait_for_log("Ingest service listening")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{listening['port']}") as channel:
        client = IngestClient(channel)
        await client.set_analytics("process", True)
        minute = int(time.time()) // 60 * 60 - 60
        assert outcome_names(await client.send([make_snapshot("process", minute)])) == ["STORED"]
    await running_process.wait_for_log("Viewer snapshot saved")
    # Its HTTP listener, on the free port the start-up line names (INGEST_PORT=0: both any free one).
    metrics_url = str(listening["metrics_address"])
    assert metrics_url == f"http://127.0.0.1:{listening['metrics_port']}/metrics"
    async with aiohttp.ClientSession() as http:
        async with http.get(metrics_url) as response:
            samples = parse_samples(await response.text())
        assert samples['ingest_snapshots_total{outcome="stored"}'] == 1
        async with http.get(metrics_url.replace("/metrics", "/readyz")) as response:
            assert response.status == 200

    running_process.process.send_signal(stop_signal)
    assert await running_process.exit_code() == 0
    messages = [entry["message"] for entry in running_process.log]
    assert "Ingest service stopped" in messages
    assert "SQLite store closed" in messages
    # The stop closed the HTTP listener with the rest.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", int(str(listening["metrics_port"])))


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "is required"),
        ("short-key", "shorter than 16 characters"),
        ("your-secret-key-here-12345", "published example value"),
        ("a-perfectly-fine-key-1234,short", "key #2 is shorter"),
    ],
    ids=["missing", "short", "example", "second-of-two-short"],
)
async def test_the_process_refuses_to_start_without_a_usable_key(
    tmp_path: Path, key: str | None, problem: str
) -> None:
    env = service_env(tmp_path)
    del env["INTERNAL_API_KEY"]
    if key is not None:
        env["INTERNAL_API_KEY"] = key
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest_service", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 2
    assert "INTERNAL_API_KEY" in stderr.decode()
    assert problem in stderr.decode()
    assert key is None or key.split(",")[0] not in stderr.decode(), "the key itself must not be printed"
