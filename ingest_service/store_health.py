"""Whether the store takes writes, and the gRPC health that follows from it and the supervised tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from grpc_health.v1 import health, health_pb2

from ingest_service.domain import StorageUnavailable
from ingest_service.storage.port import SnapshotStore
from service_common.supervision import Supervisor, TaskHealth

logger = logging.getLogger(__name__)

WRITE_CHECK_TASK = "store-write-check"


class StoreWriteCheck:
    """Learns whether the store can be written: from every write the service makes, and a probe between.

    ``run`` is a supervised loop. It raises the store's error as soon as a write of the service has
    failed (a batch, a flag) or its own probe fails, so the supervisor logs it once with its cause,
    counts it and retries with backoff; while it does, the task is unhealthy and the service's health
    says NOT_SERVING. Restarted, it probes first: the store counts as writable again once the loop has
    run the supervisor's ``stable_seconds`` without a failure.

    Args:
        store: the store to probe.
        interval_seconds: how often the store is probed while nothing fails.
    """

    def __init__(self, store: SnapshotStore, interval_seconds: float) -> None:
        self._store = store
        self._interval = interval_seconds
        self._failed: StorageUnavailable | None = None
        self._failure_seen = asyncio.Event()

    def write_failed(self, error: StorageUnavailable) -> None:
        """Records a write of the service that the store refused."""
        self._failed = error
        self._failure_seen.set()

    async def run(self) -> None:
        while True:
            if self._failed is not None:
                error, self._failed = self._failed, None
                self._failure_seen.clear()
                raise error
            await self._store.check_writable()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._failure_seen.wait(), self._interval)


class HealthReporter:
    """Sets every served name's health from the tasks the service needs: NOT_SERVING while one fails.

    Args:
        servicer: the health servicer (after its graceful shutdown began, it ignores every change).
        services: the names whose status is set ("" for the server as a whole).
        supervisor: the supervisor of the service's tasks.
        needed: names of the tasks without which the service cannot do its work.
        interval_seconds: how often the tasks' health is looked at.
    """

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        services: Collection[str],
        supervisor: Supervisor,
        needed: Collection[str],
        *,
        interval_seconds: float = 0.25,
    ) -> None:
        self._servicer = servicer
        self._services = tuple(services)
        self._supervisor = supervisor
        self._needed = frozenset(needed)
        self._interval = interval_seconds
        self.serving = True

    def failing(self) -> list[TaskHealth]:
        return [task for task in self._supervisor.unhealthy() if task.name in self._needed]

    async def run(self) -> None:
        while True:
            failing = self.failing()
            serving = not failing
            if serving != self.serving:
                self.serving = serving
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if serving
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for service in self._services:
                    await self._servicer.set(service, status)
                if serving:
                    logger.info("Ingest service serving again: every needed task is healthy")
                else:
                    logger.error(
                        "Ingest service not serving: a needed task is failing",
                        extra={
                            "tasks": [task.name for task in failing],
                            "error": failing[0].last_error,
                            "failures_total": failing[0].failures_total,
                        },
                    )
            await asyncio.sleep(self._interval)
