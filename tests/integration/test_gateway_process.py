"""``python -m socket_gateway`` as a real process: SIGKILL with a queued outbox, restart, SIGTERM.

The clock is the real one here (a process cannot share the tests' fake clock), so the "minute"
is shortened to 1 s, sampled once, for the gateway and the ingest service alike.
Waiting on another process has no event to await: the test polls its /metrics and the store,
each bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import grpc

from service_common.timing import SnapshotTiming
from tests.conftest import ingest_config, sqlite_ingest
from tests.fault_support import poll, service
from tests.gateway_support import WAIT, Viewer, stored_snapshots
from tests.support import TEST_KEY, IngestClient

REPO = Path(__file__).resolve().parents[2]
TIMING = SnapshotTiming(1, 1)


def queued_keys(outbox_path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(outbox_path)) as db:
        return [tuple(row) for row in db.execute("SELECT auction_id, minute_start FROM outbox ORDER BY id")]


async def test_sigkill_with_a_queued_outbox_then_restart_delivers_everything(tmp_path: Path) -> None:
    outbox_path = tmp_path / "outbox.sqlite3"
    env = {
        "INTERNAL_API_KEY": TEST_KEY,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        "OUTBOX_PATH": str(outbox_path),
        "SNAPSHOT_INTERVAL_SECONDS": str(TIMING.snapshot_interval_seconds),
        "SAMPLE_INTERVAL_SECONDS": str(TIMING.sample_interval_seconds),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    # A bound but never listening socket: connections to it are refused, the ingest is "down".
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        env["INGEST_TARGET"] = f"127.0.0.1:{dead.getsockname()[1]}"
        async with service("socket_gateway", {**os.environ, **env}) as first:
            port = (await first.log_entry("Socket gateway listening"))["port"]
            viewer = Viewer(f"http://127.0.0.1:{port}")
            await viewer.connect({"auctionId": "killed", "viewerId": "v1"})
            await viewer.wait_for(1)

            async def two_queued() -> bool:
                # The file, not the gauge: the gauge also counts closed minutes on their way to disk,
                # which the SIGKILL below would take with it.
                return len(queued_keys(outbox_path)) >= 2

            await poll(two_queued, "two intervals in the outbox file")
            first.process.send_signal(signal.SIGKILL)
            assert await first.exited() == -signal.SIGKILL
            await viewer.disconnect()

    queued = queued_keys(outbox_path)
    assert len(queued) >= 2
    assert {auction for auction, _ in queued} == {"killed"}

    store_path = str(tmp_path / "analytics.sqlite3")
    async with sqlite_ingest(ingest_config(sqlite_path=store_path, timing=TIMING)) as (ingest, _):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
            await IngestClient(channel, TEST_KEY).set_analytics("killed", True)
            await IngestClient(channel, TEST_KEY).set_analytics("watched", True)
        env["INGEST_TARGET"] = f"127.0.0.1:{ingest.port}"
        async with service("socket_gateway", {**os.environ, **env}) as second:
            port = (await second.log_entry("Socket gateway listening"))["port"]

            async def all_delivered() -> bool:
                stored = {
                    (row["auction_id"], row["minute_start"]) for row in stored_snapshots(store_path, "killed")
                }
                return set(queued) <= stored

            await poll(all_delivered, "the queued snapshots to be stored")
            await second.log_entry("Analytics sent")
            assert second.entries("Analytics sent")[0]["stored"] >= 1

            # SIGTERM with a viewer watching: the partial interval is sent and the process exits 0.
            viewer = Viewer(f"http://127.0.0.1:{port}")
            await viewer.connect({"auctionId": "watched"})
            await viewer.wait_for(1)
            second.process.send_signal(signal.SIGTERM)
            await second.log_entry("Partial interval closed")
            # The gateway ends the connection itself once the interval is flushed (so that a client
            # reconnects elsewhere: test_gateway_rolling_stop.py); this only tidies the client up.
            await viewer.disconnect()
            assert await second.exited() == 0
            await second.log_entry("Outbox flushed")
        watched = stored_snapshots(store_path, "watched")
        assert watched, "the partial interval was delivered before exit"
        assert watched[-1]["partial"] == 1
        assert queued_keys(outbox_path) == []


async def test_an_invalid_configuration_stops_the_process_naming_the_variable(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "INTERNAL_API_KEY"}
    env.update({"COUNT_UPDATE_INTERVAL_MS": "soon", "INTERNAL_API_KEY": TEST_KEY})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "socket_gateway", cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 2
    assert b"COUNT_UPDATE_INTERVAL_MS" in stderr


async def test_a_second_gateway_on_the_same_outbox_file_refuses_to_start_saying_why(tmp_path: Path) -> None:
    """Two gateways on one outbox would both send every snapshot (and store one node's share of the
    count); the second one is refused, with exit 2 and a line naming OUTBOX_PATH and the holder."""
    outbox_path = tmp_path / "outbox.sqlite3"
    env = {
        **os.environ,
        "INTERNAL_API_KEY": TEST_KEY,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        "INGEST_TARGET": "127.0.0.1:1",
        "OUTBOX_PATH": str(outbox_path),
        "LOG_FORMAT": "json",
    }
    async with service("socket_gateway", env) as first:
        await first.log_entry("Socket gateway listening")
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "socket_gateway", cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(second.communicate(), WAIT)
        assert second.returncode == 2
        assert b"OUTBOX_PATH" in stderr
        assert f"pid {first.process.pid}".encode() in stderr
        assert b"Traceback" not in stderr
