"""A store whose tables sit in a :class:`SqliteSnapshotStore`'s file, beside the snapshots.

The auction events and the alerts keep their rows there: sharing the snapshot store's connection
and thread keeps one writer on the file (one process owns a SQLite file, so a claim needs no more
than its transaction). Each purges its expired rows on a supervised timer, with the snapshots'
retention and period; this class is that shared part, a subclass says what expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar, Self

from ingest_service.domain import StorageUnavailable
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.supervision import Supervisor, TaskHealth


class SqliteCompanionStore:
    """Tables beside the snapshots, created at open, purged of expired rows on a supervised timer."""

    # The purge task's name in the health report, and the line logged when it removed rows.
    PURGE_TASK: ClassVar[str]
    PURGED_MESSAGE: ClassVar[str]

    def __init__(
        self,
        snapshots: SqliteSnapshotStore,
        *,
        retention_seconds: int,
        clock: Callable[[], float],
        purge_interval_seconds: float,
    ) -> None:
        self._snapshots = snapshots
        self._retention_seconds = retention_seconds
        self._clock = clock
        self._purge_interval_seconds = purge_interval_seconds
        self._supervisor = Supervisor(expected_errors=(StorageUnavailable,))

    @classmethod
    async def _open_beside(
        cls,
        snapshots: SqliteSnapshotStore,
        schema: str,
        *,
        retention_days: int,
        clock: Callable[[], float],
        purge_interval_seconds: float,
    ) -> Self:
        """Creates ``schema``'s tables if needed and starts the periodic purge.

        Raises:
            StorageUnavailable: the tables cannot be created.
        """
        await snapshots.run(lambda connection: connection.executescript(schema))
        store = cls(
            snapshots,
            retention_seconds=retention_days * 86_400,
            clock=clock,
            purge_interval_seconds=purge_interval_seconds,
        )
        store._supervisor.start(cls.PURGE_TASK, store._purge_periodically)
        return store

    async def purge_expired(self) -> int:
        """Removes the rows past retention; how many."""
        raise NotImplementedError

    def background_health(self) -> list[TaskHealth]:
        return self._supervisor.health()

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._purge_interval_seconds)
            purged = await self.purge_expired()
            if purged:
                # Logged under the subclass's module, as each store logged it before it shared this.
                logging.getLogger(type(self).__module__).info(self.PURGED_MESSAGE, extra={"purged": purged})

    async def close(self) -> None:
        await self._supervisor.stop()
