"""A full disk under the SQLite store: the batch is UNAVAILABLE, the log says why, health says NOT_SERVING,
and it all recovers once there is room again.

Two ways, each test saying which: ``tmpfs`` (root only; skipped, saying so, otherwise) puts the store's
file on a 1 MiB tmpfs the test mounts, then fills it with another file: a real full disk.
``max_page_count`` lowers SQLite's own page limit to the file's current size: a failing writer at the
storage boundary, which runs anywhere and makes SQLite answer the same ``SQLITE_FULL`` ("database or
disk is full") as a full disk does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ingest_service.config import MetricsListener
from ingest_service.domain import StorageUnavailable
from ingest_service.store_health import WRITE_CHECK_TASK
from service_common.prometheus import parse_samples
from service_common.supervision import Supervisor
from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.support import FakeClock, make_snapshot, outcome_names


def mount_tmpfs(directory: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    return mounted.returncode == 0


def unmount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], check=True)


def fill_file(path: Path) -> None:
    """Writes ``path`` until its file system has no space left."""
    with contextlib.suppress(OSError), path.open("wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 4096)


@dataclass
class FullDisk:
    running: RunningIngest
    how: str
    fill: Callable[[], object]
    free: Callable[[], object]


@pytest.fixture(params=["tmpfs", "max_page_count"])
async def disk(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[FullDisk]:
    directory = tmp_path / "store"
    directory.mkdir()
    on_tmpfs = request.param == "tmpfs"
    if on_tmpfs and not mount_tmpfs(directory, "1m"):
        pytest.skip("mounting a tmpfs needs root: the max_page_count case fills the store instead")
    config = ingest_config(sqlite_path=str(directory / "analytics.sqlite3"), metrics=MetricsListener())
    # Short backoffs, so that recovery takes a fraction of a second rather than the defaults' seconds.
    supervisor = Supervisor(
        initial_backoff_seconds=0.05,
        max_backoff_seconds=0.2,
        stable_seconds=0.3,
        expected_errors=(StorageUnavailable,),
    )
    try:
        async with serving_ingest(
            config, clock, supervisor=supervisor, write_check_interval_seconds=0.1
        ) as running:
            if on_tmpfs:
                filler = directory / "filler"
                yield FullDisk(running, "tmpfs", lambda: fill_file(filler), filler.unlink)
            else:
                store = running.store

                async def limit(pages: str) -> None:
                    await store._run(lambda db: db.execute(f"PRAGMA max_page_count={pages}").fetchone())

                async def fill() -> None:
                    (count,) = await store._run(lambda db: db.execute("PRAGMA page_count").fetchone())
                    await limit(str(count))

                yield FullDisk(running, "max_page_count", fill, lambda: limit("1073741823"))
    finally:
        if on_tmpfs:
            unmount(directory)


async def probe(running: RunningIngest, path: str) -> tuple[int, str]:
    """Status and body of ``GET path`` on the service's HTTP listener (``/readyz``, ``/metrics``)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{running.server.metrics_port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_a_full_disk_is_logged_with_its_cause_and_the_batch_is_stored_once_space_returns(
    disk: FullDisk, caplog: pytest.LogCaptureFixture
) -> None:
    running = disk.running
    client = running.client()
    await client.set_analytics("full", True)
    minute = int(running.clock.now) - 60
    # A batch big enough to need new pages whichever way the disk is full.
    batch = [make_snapshot("full", minute - 60 * n, gateway_id="g" * 100) for n in range(300)]
    result = disk.fill()
    if result is not None:
        await result  # type: ignore[misc]

    with caplog.at_level(logging.INFO), pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.send(batch)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, disk.how
    errors = [
        str(getattr(record, "error", ""))
        for record in caplog.records
        if record.getMessage() == "Storage unavailable; batch not acknowledged"
    ]
    assert errors == ["SQLite: database or disk is full"], (disk.how, errors)
    assert not any("cannot rollback" in record.getMessage() for record in caplog.records)

    result = disk.free()
    if result is not None:
        await result  # type: ignore[misc]
    assert outcome_names(await client.send(batch)) == ["STORED"] * len(batch)


async def test_health_is_not_serving_while_the_store_cannot_be_written_and_serving_once_it_can(
    disk: FullDisk, caplog: pytest.LogCaptureFixture
) -> None:
    running = disk.running
    client = running.client()
    await client.set_analytics("full", True)
    minute = int(running.clock.now) - 60
    batch = [make_snapshot("full", minute - 60 * n, gateway_id="g" * 100) for n in range(300)]
    watch = health_pb2_grpc.HealthStub(running.channel).Watch(health_pb2.HealthCheckRequest(service=""))
    try:
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        result = disk.fill()
        if result is not None:
            await result  # type: ignore[misc]
        with caplog.at_level(logging.INFO), pytest.raises(grpc.aio.AioRpcError):
            await client.send(batch)
        # Health changes as soon as the write check sees the failed batch (10 s: never, before).
        async with asyncio.timeout(10):
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING, disk.how
        # Plain HTTP says what gRPC health says, with the store's error; /metrics counts the failure.
        status, body = await probe(running, "/readyz")
        assert status == 503, body
        assert "database or disk is full" in body
        samples = parse_samples((await probe(running, "/metrics"))[1])
        assert samples["ingest_serving"] == 0
        assert samples["ingest_store_write_failures_total"] >= 1
        calls = 'ingest_grpc_calls_total{service="SnapshotIngestService",method="StreamSnapshots"'
        assert samples[f'{calls},code="UNAVAILABLE"}}'] == 1
        assert samples[f'ingest_task_failures_total{{task="{WRITE_CHECK_TASK}"}}'] >= 1
        (failed,) = [
            record
            for record in caplog.records
            if record.getMessage() == "Background task failed; restarting it"
            and getattr(record, "task", None) == WRITE_CHECK_TASK
        ]
        assert getattr(failed, "error", "") == "StorageUnavailable: SQLite: database or disk is full"
        assert failed.exc_info is None, "a full disk is a fault of the world: no traceback"
        (reported,) = [
            record
            for record in caplog.records
            if record.getMessage() == "Ingest service not serving: a needed task is failing"
        ]
        assert getattr(reported, "tasks", None) == [WRITE_CHECK_TASK]
        (check,) = [task for task in running.server.background_health() if task.name == WRITE_CHECK_TASK]
        assert check.failures_total >= 1

        result = disk.free()
        if result is not None:
            await result  # type: ignore[misc]
        assert outcome_names(await client.send(batch)) == ["STORED"] * len(batch)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        assert await probe(running, "/readyz") == (200, '{"ready": true, "problems": []}')
    finally:
        watch.cancel()
