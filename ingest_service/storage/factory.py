"""Choosing and opening the configured store."""

from __future__ import annotations

import time
from collections.abc import Callable

from ingest_service.alerts.mongo_store import MongoAlertStore
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.alerts.store import AlertStore
from ingest_service.config import IngestConfig
from ingest_service.storage.event_port import AuctionEventStore
from ingest_service.storage.mongo_events import MongoAuctionEventStore
from ingest_service.storage.mongo_store import MongoSnapshotStore
from ingest_service.storage.port import SnapshotStore
from ingest_service.storage.sqlite_events import SqliteAuctionEventStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore


async def open_store(config: IngestConfig, clock: Callable[[], float] = time.time) -> SnapshotStore:
    """MongoDB when ``MONGODB_URI`` is set, else the embedded SQLite file.

    Raises:
        StorageUnavailable: the database cannot be opened.
    """
    if config.mongodb_uri:
        return await MongoSnapshotStore.open(
            config.mongodb_uri,
            retention_days=config.retention_days,
            server_selection_timeout_ms=round(config.mongodb_server_selection_timeout_seconds * 1000),
            settings=config.mongodb,
        )
    return await SqliteSnapshotStore.open(
        config.sqlite_path,
        retention_days=config.retention_days,
        clock=clock,
        busy_timeout_ms=round(config.sqlite_busy_timeout_seconds * 1000),
    )


async def open_event_store(
    config: IngestConfig, snapshots: SnapshotStore, clock: Callable[[], float] = time.time
) -> AuctionEventStore:
    """The auction events' store beside ``snapshots`` (the store :func:`open_store` opened).

    Raises:
        StorageUnavailable: its tables or indexes cannot be set up.
    """
    if isinstance(snapshots, MongoSnapshotStore):
        return await MongoAuctionEventStore.open(snapshots, retention_days=config.retention_days, clock=clock)
    if isinstance(snapshots, SqliteSnapshotStore):
        return await SqliteAuctionEventStore.open(
            snapshots, retention_days=config.retention_days, clock=clock
        )
    raise TypeError(f"no auction event store for {type(snapshots).__name__}")


async def open_alert_store(
    config: IngestConfig, snapshots: SnapshotStore, clock: Callable[[], float] = time.time
) -> AlertStore:
    """The alert rules' and deliveries' store beside ``snapshots`` (the store :func:`open_store` opened).

    Raises:
        StorageUnavailable: its tables or indexes cannot be set up.
    """
    if isinstance(snapshots, MongoSnapshotStore):
        return await MongoAlertStore.open(snapshots, retention_days=config.retention_days, clock=clock)
    if isinstance(snapshots, SqliteSnapshotStore):
        return await SqliteAlertStore.open(snapshots, retention_days=config.retention_days, clock=clock)
    raise TypeError(f"no alert store for {type(snapshots).__name__}")
