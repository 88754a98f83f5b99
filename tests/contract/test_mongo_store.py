"""What only the MongoDB adapter has: its indexes, a TTL that follows the setting, connection loss."""

from __future__ import annotations

import gc
import secrets
import socket
import warnings
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from ingest_service.domain import StorageUnavailable
from ingest_service.storage.mongo_store import TTL_INDEX, UNIQUE_INDEX, MongoSnapshotStore
from ingest_service.storage.port import SNAPSHOT_COLLECTION

Document = dict[str, object]


@pytest.fixture
async def database_uri(secantus_uri: str) -> AsyncIterator[str]:
    name = f"mongo_{secrets.token_hex(6)}"
    yield secantus_uri.rstrip("/") + "/" + name
    client: AsyncMongoClient[Document] = AsyncMongoClient(secantus_uri)
    await client.drop_database(name)
    await client.close()


async def index_information(uri: str) -> MutableMapping[str, Any]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri)
    try:
        return await client.get_default_database()[SNAPSHOT_COLLECTION].index_information()
    finally:
        await client.close()


async def test_indexes_are_unique_key_and_ttl_from_retention(database_uri: str) -> None:
    store = await MongoSnapshotStore.open(database_uri, retention_days=90)
    await store.close()
    indexes = await index_information(database_uri)
    assert indexes[UNIQUE_INDEX]["key"] == [("auction", 1), ("timestamp", 1)]
    assert indexes[UNIQUE_INDEX]["unique"] is True
    assert indexes[TTL_INDEX]["key"] == [("timestamp", 1)]
    assert indexes[TTL_INDEX]["expireAfterSeconds"] == 90 * 86_400


async def test_changed_retention_changes_the_existing_ttl_index(database_uri: str) -> None:
    await (await MongoSnapshotStore.open(database_uri, retention_days=90)).close()
    await (await MongoSnapshotStore.open(database_uri, retention_days=30)).close()
    assert (await index_information(database_uri))[TTL_INDEX]["expireAfterSeconds"] == 30 * 86_400
    # Opening again with the same setting changes nothing and does not fail.
    await (await MongoSnapshotStore.open(database_uri, retention_days=30)).close()
    assert (await index_information(database_uri))[TTL_INDEX]["expireAfterSeconds"] == 30 * 86_400


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_server_is_reported_unavailable() -> None:
    uri = f"mongodb://127.0.0.1:{closed_loopback_port()}/nothing"
    with pytest.raises(StorageUnavailable):
        await MongoSnapshotStore.open(uri, retention_days=90, server_selection_timeout_ms=200)
    # PyMongo 4.20's async monitor leaks the socket of a connect attempt that close() cancels
    # (pool_shared._async_create_connection closes it only on OSError/TimeoutError). Collect it
    # here, where the cause is known, instead of letting its ResourceWarning fail a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
