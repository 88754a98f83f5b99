"""Faults with real processes: the ingest service and the socket gateway killed, restarted, starved.

Both services run as ``python -m`` child processes on the real clock, so the "minute" is shortened
to 1 s (sampled once) for both. A process offers no event this test could await: waits poll its
/metrics, its log lines or the SQLite files, each bounded by a deadline.

The oracle for "nothing lost, nothing duplicated" is what the gateway itself produced: the keys
queued in its outbox file, and the count of snapshots it put into that file in all, its last partial
interval included (logged with ``Socket gateway stopped``). The ingest store's rows are compared with
that as lists, so a duplicate row (impossible by the store's unique key, but that is what is being
proved) or a lost one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pymongo import AsyncMongoClient
from secantus import SecantusDBServer
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2_grpc as ingest_grpc

from ingest_service.storage.mongo_store import DEFAULT_DATABASE
from ingest_service.storage.port import SNAPSHOT_COLLECTION
from tests.fault_support import (
    FAULT_WAIT,
    ServiceProcess,
    base_env,
    metrics,
    outbox_keys,
    poll,
    service,
    stored_keys,
)
from tests.gateway_support import Viewer
from tests.support import TEST_KEY, IngestClient, make_snapshot

TIMING_ENV = {"SNAPSHOT_INTERVAL_SECONDS": "1", "SAMPLE_INTERVAL_SECONDS": "1"}
# The SQLite files' busy wait, shortened from the default 5 s so that a held lock makes writes fail
# within a sample interval (and the test waits seconds, not tens of seconds, for it).
BUSY_TIMEOUT_SECONDS = "0.5"


def ingest_env(store: Path, port: int = 0) -> dict[str, str]:
    return base_env(
        INGEST_HOST="127.0.0.1",
        INGEST_PORT=str(port),
        # Restarted on a fixed gRPC port: the metrics port is any free one, not the one below it.
        INGEST_METRICS_PORT="0",
        ANALYTICS_SQLITE_PATH=str(store),
        ANALYTICS_SQLITE_BUSY_TIMEOUT_SECONDS=BUSY_TIMEOUT_SECONDS,
        INGEST_SHUTDOWN_GRACE_SECONDS="1",
        **TIMING_ENV,
    )


def gateway_env(outbox: Path, ingest_port: int, **extra: str) -> dict[str, str]:
    return base_env(
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT="0",
        GATEWAY_GRPC_PORT="0",
        INGEST_TARGET=f"127.0.0.1:{ingest_port}",
        OUTBOX_PATH=str(outbox),
        OUTBOX_BUSY_TIMEOUT_SECONDS=BUSY_TIMEOUT_SECONDS,
        ALLOWED_ORIGIN="*",
        GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE="100000",
        GATEWAY_SHUTDOWN_FLUSH_SECONDS="5",
        **TIMING_ENV,
        **extra,
    )


async def start_ingest(store: Path, port: int = 0) -> tuple[ServiceProcess, int]:
    process = await ServiceProcess.start("ingest_service", ingest_env(store, port))
    return process, int((await process.log_entry("Ingest service listening"))["port"])


async def enable(port: int, auctions: Iterable[str]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = IngestClient(channel, TEST_KEY)
        for auction in auctions:
            await client.set_analytics(auction, True)


async def gateway_port(gateway: ServiceProcess) -> int:
    return int((await gateway.log_entry("Socket gateway listening"))["port"])


async def viewers(url: str, auctions: Iterable[str]) -> list[Viewer]:
    return list(await asyncio.gather(*(Viewer(url).connect({"auctionId": a}) for a in auctions)))


async def close_all(watching: Iterable[Viewer]) -> None:
    await asyncio.gather(*(viewer.disconnect() for viewer in watching))


async def sigterm(gateway: ServiceProcess, watching: Iterable[Viewer]) -> int:
    """Stops the gateway as an operator would; returns how many snapshots it put into its outbox in all,
    its partial interval included (read at exit: minutes keep closing until the stop)."""
    gateway.process.send_signal(signal.SIGTERM)
    await gateway.log_entry("Partial interval closed")
    # python-socketio's client does not close its socket when the server says goodbye (a browser does).
    await close_all(watching)
    assert await gateway.exited() == 0
    await gateway.log_entry("Outbox flushed")
    return int((await gateway.log_entry("Socket gateway stopped"))["snapshots_enqueued_total"])


def assert_contiguous(keys: list[tuple[str, int]], auction: str) -> None:
    minutes = [minute for key_auction, minute in keys if key_auction == auction]
    assert minutes, f"nothing stored for {auction}"
    assert minutes == list(range(minutes[0], minutes[-1] + 1)), f"{auction}: a minute is missing or repeated"


def sent_totals(*gateways: ServiceProcess) -> dict[str, int]:
    totals = {"sent": 0, "stored": 0, "duplicate": 0, "skipped_analytics_disabled": 0, "rejected": 0}
    for gateway in gateways:
        for entry in gateway.entries("Analytics sent"):
            for name in totals:
                totals[name] += int(entry[name])
    return totals


async def test_ingest_down_for_several_minutes_while_viewers_come_and_go_stores_every_minute_once(
    tmp_path: Path,
) -> None:
    """Proves that a gateway rides out an ingest crash lasting several minutes with viewers joining and
    leaving meanwhile: afterwards the store holds exactly the minutes the gateway produced (its
    count of snapshots put into its outbox, the final partial interval included), each once, every
    minute of the watched auctions without a gap, including every minute queued during the outage."""
    store, outbox = tmp_path / "analytics.sqlite3", tmp_path / "outbox.sqlite3"
    steady_rooms = ["fault-a", "fault-b"]
    churn_rooms = [*steady_rooms, "fault-c"]
    first_ingest, port = await start_ingest(store)
    second_ingest: ServiceProcess | None = None
    try:
        await enable(port, churn_rooms)
        async with (
            service("socket_gateway", gateway_env(outbox, port)) as gateway,
            aiohttp.ClientSession() as http,
        ):
            gport = await gateway_port(gateway)
            url = f"http://127.0.0.1:{gport}"
            steady = await viewers(url, steady_rooms)
            await gateway.log_entry("Analytics sent")
            await first_ingest.kill()

            # Four shortened minutes of churn while the ingest service is down, and longer on a machine
            # so loaded that fewer than three of them reached the outbox file by then.
            churned = 0
            rng = random.Random(7)
            outage_ends = time.monotonic() + 4.0
            gives_up = outage_ends + FAULT_WAIT

            def minutes_on_disk() -> int:
                return len({minute for _, minute in outbox_keys(outbox)})

            while time.monotonic() < outage_ends or (minutes_on_disk() < 3 and time.monotonic() < gives_up):
                batch = await viewers(url, rng.choices(churn_rooms, k=5))
                churned += len(batch)
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                await close_all(batch)
            queued_during_outage = outbox_keys(outbox)
            assert len({minute for _, minute in queued_during_outage}) >= 3, (
                "the outage spans several minutes"
            )
            assert (await metrics(http, gport))["gateway_send_failures_total"] >= 1

            # The same port: the gateway is configured with one ingest address.
            second_ingest, _ = await start_ingest(store, port)

            async def drained() -> bool:
                values = await metrics(http, gport)
                return values["gateway_outbox_depth"] == 0 and values["gateway_snapshots_enqueued_total"] > 0

            await poll(drained, "the outbox to drain after the ingest service came back")
            enqueued = await sigterm(gateway, steady)

        stored = stored_keys(store)
        assert len(stored) == len(set(stored)) == enqueued
        assert set(queued_during_outage) <= set(stored)
        for auction in steady_rooms:
            assert_contiguous(stored, auction)
        totals = sent_totals(gateway)
        assert totals["stored"] == len(stored)
        assert totals["rejected"] == 0
        assert churned >= 10
    finally:
        await first_ingest.kill()
        if second_ingest is not None:
            await second_ingest.kill()


async def test_storage_locked_is_unavailable_and_the_gateway_delivers_later(tmp_path: Path) -> None:
    """Proves that when the SQLite file is write-locked by another process the ingest service answers
    ``UNAVAILABLE`` (and logs it) instead of failing or acknowledging, the gateway keeps the snapshots
    meanwhile, and once the lock is gone every minute it produced is stored exactly once."""
    store, outbox = tmp_path / "analytics.sqlite3", tmp_path / "outbox.sqlite3"
    ingest, port = await start_ingest(store)
    try:
        await enable(port, ["locked-a"])
        async with (
            service("socket_gateway", gateway_env(outbox, port)) as gateway,
            aiohttp.ClientSession() as http,
        ):
            gport = await gateway_port(gateway)
            steady = await viewers(f"http://127.0.0.1:{gport}", ["locked-a"])
            await gateway.log_entry("Analytics sent")

            with closing(sqlite3.connect(store, timeout=FAULT_WAIT, isolation_level=None)) as lock:
                # A writer's lock: in WAL mode readers go on, every other writer waits and then fails.
                lock.execute("BEGIN IMMEDIATE")
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    probe = make_snapshot("locked-a", int(time.time()) - 3600, sample_count=1)
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await IngestClient(channel, TEST_KEY).send([probe])
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "storage unavailable" in (refused.value.details() or "")
                await ingest.log_entry("Storage unavailable; batch not acknowledged")

                async def gateway_failed_and_queued() -> bool:
                    values = await metrics(http, gport)
                    return values["gateway_send_failures_total"] >= 1 and values["gateway_outbox_depth"] >= 2

                await poll(gateway_failed_and_queued, "the gateway to fail a send and keep queuing")
                queued_while_locked = outbox_keys(outbox)
                lock.execute("ROLLBACK")

            async def drained() -> bool:
                return (await metrics(http, gport))["gateway_outbox_depth"] == 0

            await poll(drained, "the outbox to drain once the lock is gone")
            enqueued = await sigterm(gateway, steady)

        stored = stored_keys(store)
        assert ("locked-a", probe.minute_start) not in stored, "the refused probe was not written"
        assert len(stored) == len(set(stored)) == enqueued
        assert set(queued_while_locked) <= set(stored)
        assert_contiguous(stored, "locked-a")
    finally:
        await ingest.kill()


class RestartableMongo:
    """A SecantusDB server (the MongoDB wire protocol, WiredTiger inside; see ``tests/conftest.py``) that
    the test stops and starts again on the same loopback port and data directory.

    Stopped, its port refuses connections: to the ingest service's PyMongo client MongoDB is unreachable,
    as when mongod is down. Started again, it serves the same data where the ingest service looks for it.
    """

    def __init__(self, storage: Path) -> None:
        self._storage = storage
        self._server: SecantusDBServer | None = None
        self.port = 0  # a free one at the first start, then the same one

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        server = SecantusDBServer(
            host="127.0.0.1", port=self.port, storage_path=str(self._storage), ttl_sweep_seconds=1.0
        )
        server.start()
        self._server, self.port = server, server.port

    async def stop(self) -> None:
        if self._server is not None:
            # It joins its threads and closes WiredTiger: off the event loop the child processes' logs run on.
            await asyncio.to_thread(self._server.stop)
            self._server = None

    async def stored_keys(self) -> list[tuple[str, int]]:
        """Every (auction, minute) of the ingest service's snapshot collection, duplicates included."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.uri, tz_aware=True)
        try:
            cursor = client[DEFAULT_DATABASE][SNAPSHOT_COLLECTION].find(
                {}, {"_id": 0, "auction": 1, "timestamp": 1}
            )
            documents = await cursor.to_list()
        finally:
            await client.close()
        return sorted((str(d["auction"]), int(d["timestamp"].timestamp())) for d in documents)


async def test_mongodb_unreachable_is_unavailable_and_the_gateway_delivers_later(tmp_path: Path) -> None:
    """Proves that with MongoDB configured and then unreachable (the server stopped: connections
    refused) the ingest service answers ``UNAVAILABLE`` within its server-selection timeout, not
    ``INTERNAL``, and stores nothing; the gateway keeps queuing; once MongoDB is back on the same port
    with the same data, every minute the gateway produced is in the collection exactly once."""
    mongo = RestartableMongo(tmp_path / "mongo")
    outbox = tmp_path / "outbox.sqlite3"
    mongo.start()
    ingest: ServiceProcess | None = None
    try:
        ingest = await ServiceProcess.start(
            "ingest_service",
            base_env(
                INGEST_HOST="127.0.0.1",
                INGEST_PORT="0",
                MONGODB_URI=mongo.uri,
                MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS="0.5",
                INGEST_SHUTDOWN_GRACE_SECONDS="1",
                **TIMING_ENV,
            ),
        )
        port = int((await ingest.log_entry("Ingest service listening"))["port"])
        await enable(port, ["mongo-a"])
        async with (
            service("socket_gateway", gateway_env(outbox, port)) as gateway,
            aiohttp.ClientSession() as http,
        ):
            gport = await gateway_port(gateway)
            steady = await viewers(f"http://127.0.0.1:{gport}", ["mongo-a"])
            await gateway.log_entry("Analytics sent")

            await mongo.stop()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                probe = make_snapshot("mongo-a", int(time.time()) - 3600, sample_count=1)
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await IngestClient(channel, TEST_KEY).send([probe])
                refused_after = time.monotonic() - started
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "storage unavailable" in (refused.value.details() or "")
            assert refused_after < 3.0, "after the 0.5 s server selection timeout, not the 30 s default"
            down = await ingest.log_entry("Storage unavailable; batch not acknowledged")
            assert "Connect call failed" in down["error"], (
                "PyMongo's server selection gave up on the refused port"
            )

            async def gateway_failed_and_queued() -> bool:
                values = await metrics(http, gport)
                return values["gateway_send_failures_total"] >= 1 and values["gateway_outbox_depth"] >= 2

            await poll(gateway_failed_and_queued, "the gateway to fail a send and keep queuing")
            failures = [
                e["error"]
                for e in gateway.entries("Snapshot stream failed; will re-send unacknowledged snapshots")
            ]
            assert failures
            assert set(failures) == {"UNAVAILABLE"}
            queued_while_down = outbox_keys(outbox)

            mongo.start()

            async def drained() -> bool:
                return (await metrics(http, gport))["gateway_outbox_depth"] == 0

            await poll(drained, "the outbox to drain once MongoDB is back")
            enqueued = await sigterm(gateway, steady)

        stored = await mongo.stored_keys()
        assert ("mongo-a", probe.minute_start) not in stored, "the refused probe was not written"
        assert len(stored) == len(set(stored)) == enqueued
        assert set(queued_while_down) <= set(stored)
        assert_contiguous(stored, "mongo-a")
        assert not [e for e in ingest.logs if e.get("level") == "ERROR" and e.get("exception")], (
            "no traceback"
        )
    finally:
        if ingest is not None:
            await ingest.kill()
        await mongo.stop()


async def test_gateway_sigkilled_at_random_moments_while_sending_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """Proves that SIGKILL of the gateway at random moments while it is draining its outbox loses no
    snapshot and stores none twice: after the last restart the store holds exactly the keys that were
    queued, as a list (so a missing or a repeated one fails), and at least one kill landed with the
    outbox partly sent."""
    store, outbox = tmp_path / "analytics.sqlite3", tmp_path / "outbox.sqlite3"
    rooms = [f"killed-{n}" for n in range(30)]
    ingest, port = await start_ingest(store)
    restarted: ServiceProcess | None = None
    try:
        await enable(port, rooms)
        await ingest.kill()

        # Fill the outbox while the ingest service is down, then crash the gateway.
        async with service("socket_gateway", gateway_env(outbox, port)) as filling:
            gport = await gateway_port(filling)
            watching = await viewers(f"http://127.0.0.1:{gport}", rooms)

            async def filled() -> bool:
                # The file, not the gauge: the gauge also counts closed minutes on their way to disk,
                # which a SIGKILL a moment after the close would take with it.
                return len(outbox_keys(outbox)) >= 120

            await poll(filled, "120 snapshots in the outbox file")
            await filling.kill()
            await close_all(watching)
        queued = outbox_keys(outbox)
        assert len(queued) == len(set(queued)) >= 120

        restarted, _ = await start_ingest(store, port)
        rng = random.Random()
        depths_at_kill: list[int] = []
        # Small batches, so that sending takes many round trips and a kill lands among them.
        env = gateway_env(outbox, port, GATEWAY_SEND_BATCH_SIZE="1")
        runs: list[ServiceProcess] = []
        for _ in range(4):
            if not outbox_keys(outbox):
                break  # sent in full before this kill: the last run below finds nothing to send
            async with service("socket_gateway", env) as gateway:
                runs.append(gateway)
                await gateway.log_entry("Analytics sent")
                await asyncio.sleep(rng.uniform(0.0, 0.2))
                await gateway.kill()
            depths_at_kill.append(len(outbox_keys(outbox)))
        async with service("socket_gateway", env) as last, aiohttp.ClientSession() as http:
            runs.append(last)
            gport = await gateway_port(last)

            async def drained() -> bool:
                return (await metrics(http, gport))["gateway_outbox_depth"] == 0

            await poll(drained, "the outbox to drain")
            last.process.send_signal(signal.SIGTERM)
            assert await last.exited() == 0

        assert sorted(stored_keys(store)) == sorted(queued), f"outbox depths at each kill: {depths_at_kill}"
        assert any(0 < depth < len(queued) for depth in depths_at_kill), depths_at_kill
        totals = sent_totals(*runs)
        # A batch stored but killed before its acknowledgement was read comes back as DUPLICATE, and a
        # batch acknowledged but killed before its log line is in no log: the logs can only undercount.
        assert totals["stored"] <= len(queued)
        assert totals["rejected"] == totals["skipped_analytics_disabled"] == 0
    finally:
        await ingest.kill()
        if restarted is not None:
            await restarted.kill()


class WithheldAcks(ingest_grpc.SnapshotIngestServiceServicer):  # type: ignore[misc]
    """An ingest service that reads batches but answers none until released: a slow store.

    A stand-in, not a mock of the protocol: it speaks the real gRPC contract on a real port; the
    delay is the fault being injected.
    """

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.batches_waiting = 0
        self.most_waiting = 0
        self.acked = 0

    async def StreamSnapshots(
        self,
        request_iterator: AsyncIterator[ingest_pb2.StreamSnapshotsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ingest_pb2.StreamSnapshotsResponse]:
        async for request in request_iterator:
            self.batches_waiting += 1
            self.most_waiting = max(self.most_waiting, self.batches_waiting)
            await self.released.wait()
            self.batches_waiting -= 1
            self.acked += len(request.snapshots)
            yield ingest_pb2.StreamSnapshotsResponse(
                acks=[
                    ingest_pb2.SnapshotAck(
                        auction_id=s.auction_id,
                        minute_start=s.minute_start,
                        outcome=ingest_pb2.SNAPSHOT_OUTCOME_STORED,
                    )
                    for s in request.snapshots
                ]
            )


@asynccontextmanager
async def withheld_ack_server() -> AsyncIterator[tuple[WithheldAcks, int]]:
    servicer = WithheldAcks()
    server = grpc.aio.server()
    ingest_grpc.add_SnapshotIngestServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(
        "viewer_analytics.v1.SnapshotIngestService", health_pb2.HealthCheckResponse.SERVING
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        servicer.released.set()
        await server.stop(0)


async def test_slow_ingest_keeps_the_gateway_bounded_by_its_outbox_cap(tmp_path: Path) -> None:
    """Proves, against an ingest service that withholds its acknowledgements, that the gateway keeps
    one batch in flight (no pile of requests in memory), never queues past ``OUTBOX_MAX_SNAPSHOTS``,
    drops the newest beyond it with an ERROR line and a counter, reports not ready while full, keeps
    its memory flat while dropping, and recovers (drains, ready again) once acknowledgements flow."""
    outbox = tmp_path / "outbox.sqlite3"
    cap = 30
    rooms = [f"slow-{n}" for n in range(15)]
    async with withheld_ack_server() as (servicer, port):
        env = gateway_env(outbox, port, OUTBOX_MAX_SNAPSHOTS=str(cap), GATEWAY_SEND_BATCH_SIZE="5")
        async with service("socket_gateway", env) as gateway, aiohttp.ClientSession() as http:
            gport = await gateway_port(gateway)
            watching = await viewers(f"http://127.0.0.1:{gport}", rooms)

            async def dropping() -> bool:
                return (await metrics(http, gport))["gateway_outbox_dropped_total"] > 0

            await poll(dropping, "the outbox to reach its cap")
            full = await gateway.log_entry("Outbox full; snapshots dropped")
            assert full["cap"] == cap
            ready = await http.get(f"http://127.0.0.1:{gport}/readyz")
            assert ready.status == 503
            assert f"outbox at its cap ({cap})" in (await ready.json())["problems"]

            rss_at_cap = gateway.rss_kib()
            dropped_at_cap = (await metrics(http, gport))["gateway_outbox_dropped_total"]

            async def dropped_more() -> bool:
                return (await metrics(http, gport))[
                    "gateway_outbox_dropped_total"
                ] >= dropped_at_cap + 3 * len(rooms)

            await poll(dropped_more, "three more minutes dropped at the cap")
            values = await metrics(http, gport)
            assert values["gateway_outbox_depth"] == cap
            assert len(outbox_keys(outbox)) == cap
            assert servicer.most_waiting == 1, "one batch in flight"
            # Dropping at the cap costs no memory: a little allocator noise at most.
            assert gateway.rss_kib() - rss_at_cap < 4096

            servicer.released.set()

            async def recovered() -> bool:
                values = await metrics(http, gport)
                answer = await http.get(f"http://127.0.0.1:{gport}/readyz")
                return values["gateway_outbox_depth"] < cap and answer.status == 200

            await poll(recovered, "the outbox to drain below its cap and the gateway to be ready")

            async def every_ack_counted() -> bool:
                # An acknowledgement is counted once its batch has left the outbox file (on the
                # outbox's thread), a moment after the servicer sent it.
                values = await metrics(http, gport)
                return values['gateway_snapshots_acked_total{outcome="stored"}'] == servicer.acked

            await poll(every_ack_counted, "every acknowledgement sent to be counted by the gateway")
            await close_all(watching)


@pytest.mark.parametrize(
    "gateway_key",
    ["wrong-internal-key-0123456789", "graphql-jwt-secret-of-another-service-0123456789"],
    ids=["wrong key", "another service's secret"],
)
async def test_gateway_with_a_wrong_key_is_refused_stores_nothing_and_no_log_holds_the_key(
    tmp_path: Path, gateway_key: str
) -> None:
    """Proves on the gateway → ingest path, with both as real processes, that a gateway sending a
    wrong key (or another service's secret) is refused: the ingest service logs the refusal, the
    gateway logs UNAUTHENTICATED and keeps its snapshots queued, nothing is stored, and neither
    process writes the key it was sent (or its own) into any log line."""
    store, outbox = tmp_path / "analytics.sqlite3", tmp_path / "outbox.sqlite3"
    ingest, port = await start_ingest(store)
    try:
        await enable(port, ["keyed-a"])
        env = gateway_env(outbox, port)
        env["INTERNAL_API_KEY"] = gateway_key
        async with service("socket_gateway", env) as gateway, aiohttp.ClientSession() as http:
            gport = await gateway_port(gateway)
            watching = await viewers(f"http://127.0.0.1:{gport}", ["keyed-a"])
            refused = await ingest.log_entry("Refused internal call")
            failed = await gateway.log_entry("Snapshot stream failed; will re-send unacknowledged snapshots")
            assert failed["error"] == "UNAUTHENTICATED"
            # The gateway calls the snapshot stream and the alert rules' list with the same key; the
            # ingest service logs the first refusal of a cause per window, whichever came first.
            assert str(refused["method"]).split("/")[1] in {
                "viewer_analytics.v1.SnapshotIngestService",
                "viewer_analytics.v1.AlertRuleService",
            }, refused

            async def queued() -> bool:
                return (await metrics(http, gport))["gateway_outbox_depth"] >= 2

            await poll(queued, "snapshots kept in the outbox")
            await close_all(watching)
        assert stored_keys(store) == []
        logged = json.dumps(ingest.logs + gateway.logs)
        assert gateway_key not in logged
        assert TEST_KEY not in logged
    finally:
        await ingest.kill()


OutboxFault = Callable[[Path], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def write_lock_held(outbox: Path) -> AsyncIterator[None]:
    """Another process's write lock on the outbox file, held longer than the gateway's busy wait
    (``BUSY_TIMEOUT_SECONDS``), so its writes fail with ``database is locked`` rather than just wait."""
    with closing(sqlite3.connect(outbox, timeout=FAULT_WAIT, isolation_level=None)) as lock:
        lock.execute("BEGIN IMMEDIATE")
        yield
        lock.execute("ROLLBACK")


@asynccontextmanager
async def disk_filled(outbox: Path) -> AsyncIterator[None]:
    """The outbox's file system (a small tmpfs the test mounted) filled to the last byte, so every
    write fails with ``database or disk is full``; freed again on exit."""
    filler = outbox.parent / "filler"
    # Unbuffered: closing then has nothing left to write into the full disk.
    with filler.open("wb", buffering=0) as blocks, contextlib.suppress(OSError):
        while blocks.write(bytes(4096)):
            pass
    yield
    filler.unlink()


@asynccontextmanager
async def small_tmpfs(where: Path) -> AsyncIterator[Path]:
    """A 1 MiB tmpfs mounted at ``where`` (root only: the machines CI runs on)."""
    os.mkdir(where)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root; the write-lock test covers the same path")
    mounted = await asyncio.create_subprocess_exec(
        "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where), stderr=asyncio.subprocess.PIPE
    )
    _, error = await mounted.communicate()
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {error.decode().strip()}")
    try:
        yield where
    finally:
        unmounted = await asyncio.create_subprocess_exec("umount", "-l", str(where))
        await unmounted.wait()


async def ride_out_an_outbox_fault(tmp_path: Path, outbox: Path, fault: OutboxFault, seconds: float) -> None:
    """The gateway, watched by two auctions, while ``fault`` keeps its outbox file unwritable for
    ``seconds``: ``/healthz`` keeps answering at once, ``/readyz`` says the outbox cannot be written,
    sampling goes on, and afterwards every minute of both auctions is stored, none missing, none twice."""
    store = tmp_path / "analytics.sqlite3"
    rooms = ["outbox-fault-a", "outbox-fault-b"]
    ingest, port = await start_ingest(store)
    try:
        await enable(port, rooms)
        async with (
            service("socket_gateway", gateway_env(outbox, port)) as gateway,
            aiohttp.ClientSession() as http,
        ):
            gport = await gateway_port(gateway)
            base = f"http://127.0.0.1:{gport}"
            steady = await viewers(base, rooms)
            await gateway.log_entry("Analytics sent")

            slowest_probe = 0.0
            unwritable_reported: list[str] = []
            async with fault(outbox):
                fault_ends = time.monotonic() + seconds
                while time.monotonic() < fault_ends:
                    started = time.monotonic()
                    assert (await http.get(f"{base}/healthz")).status == 200
                    slowest_probe = max(slowest_probe, time.monotonic() - started)
                    ready = await http.get(f"{base}/readyz")
                    if ready.status == 503:
                        unwritable_reported += [p for p in (await ready.json())["problems"] if "outbox" in p]
                    await asyncio.sleep(0.05)
            enqueued_at_release = int((await metrics(http, gport))["gateway_snapshots_enqueued_total"])

            async def sampling_goes_on() -> bool:
                values = await metrics(http, gport)
                return values["gateway_snapshots_enqueued_total"] >= enqueued_at_release + 2 * len(rooms)

            await poll(sampling_goes_on, "minutes closed after the fault to reach the outbox")

            async def drained() -> bool:
                return (await metrics(http, gport))["gateway_outbox_depth"] == 0

            await poll(drained, "the outbox to drain once the fault is gone")

            async def ready_again() -> bool:
                return (await http.get(f"{base}/readyz")).status == 200

            await poll(ready_again, "/readyz to say ready once the outbox is written again")
            values = await metrics(http, gport)
            assert values["gateway_outbox_write_failures_total"] >= 1
            enqueued = await sigterm(gateway, steady)

        assert slowest_probe < 1.0, f"/healthz took {slowest_probe:.2f} s while the outbox was unwritable"
        assert unwritable_reported, "/readyz never said the outbox cannot be written"
        assert len(gateway.entries("Outbox write failed; keeping snapshots in memory")) == 1
        stored = stored_keys(store)
        assert len(stored) == len(set(stored)) == enqueued
        for auction in rooms:
            assert_contiguous(stored, auction)
    finally:
        await ingest.kill()


async def test_outbox_write_locked_by_another_process_keeps_sampling_and_loses_no_minute(
    tmp_path: Path,
) -> None:
    """Proves that another process holding the outbox's write lock for 3 s (several times the
    gateway's busy wait) neither stops the sampler nor stalls the event loop, and loses no minute."""
    await ride_out_an_outbox_fault(tmp_path, tmp_path / "outbox.sqlite3", write_lock_held, 3.0)


async def test_outbox_disk_full_for_seconds_keeps_sampling_and_loses_no_minute(tmp_path: Path) -> None:
    """Proves that the outbox's disk full for 3 s (a real tmpfs filled to the last byte; root only)
    neither stops the sampler nor stalls the event loop, and loses no minute."""
    async with small_tmpfs(tmp_path / "disk") as disk:
        await ride_out_an_outbox_fault(tmp_path, disk / "outbox.sqlite3", disk_filled, 3.0)
