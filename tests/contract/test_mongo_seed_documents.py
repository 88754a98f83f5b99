"""MongoDB beside the seed's backend: its documents, its ObjectIds and its auction flag, through the gRPC API.

The documents here are written with PyMongo as the seed's backend (Mongoose) writes them, then read
through the real ingest service's gRPC API, on SecantusDB and on ``TEST_MONGODB_URI`` when set.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_audience_service_pb2_grpc as audience_grpc
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2

from ingest_service.config import MongoSettings
from ingest_service.domain import AuctionIdType, Snapshot
from ingest_service.server import create_ingest_server
from ingest_service.storage.mongo_events import MongoAuctionEventStore
from ingest_service.storage.mongo_store import MongoSnapshotStore
from ingest_service.storage.port import SETTINGS_COLLECTION, SNAPSHOT_COLLECTION
from service_common.grpc_tls import open_channel
from tests.conftest import ingest_config
from tests.contract.conftest import _mongo_uris
from tests.contract.test_snapshot_store_contract import expected_points
from tests.graphql_support import (
    ANALYTICS_QUERY,
    SET_ANALYTICS,
    SETTINGS_QUERY,
    admin_token,
    graphql_config,
    running_graphql,
)
from tests.integration.test_ingest_auction_events import bid, closed, opened, record
from tests.integration.test_ingest_queries import query
from tests.support import FakeClock, IngestClient, make_snapshot, outcome_names

Document = dict[str, Any]
MONGO_BACKENDS = [name for name, _ in _mongo_uris("")]
HOUR = 3600


@dataclass
class Database:
    uri: str
    db: AsyncDatabase[Document]


@pytest.fixture(params=MONGO_BACKENDS)
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    server_uri = dict(_mongo_uris(request.getfixturevalue("secantus_uri")))[request.param]
    name = f"seed_{secrets.token_hex(6)}"
    client: AsyncMongoClient[Document] = AsyncMongoClient(server_uri, tz_aware=True)
    yield Database(server_uri.rstrip("/") + "/" + name, client[name])
    await client.drop_database(name)
    await client.close()


@dataclass
class ServedIngest(IngestClient):
    """A client of the ingest service, which also knows where it listens (for the GraphQL API)."""

    target: str = ""


@asynccontextmanager
async def ingest_on(
    database: Database, clock: FakeClock, settings: MongoSettings | None = None
) -> AsyncIterator[ServedIngest]:
    """The real ingest service on ``database``, with a client on a channel to it."""
    settings = settings or MongoSettings()
    config = ingest_config(mongodb_uri=database.uri, mongodb=settings)
    store = await MongoSnapshotStore.open(database.uri, retention_days=90, settings=settings)
    events = await MongoAuctionEventStore.open(store, retention_days=90, clock=clock)
    server = create_ingest_server(config, store, clock, event_store=events)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    channel = open_channel(target, None)
    try:
        yield ServedIngest(channel, target=target)
    finally:
        await channel.close()
        await server.stop(0)
        await store.close()


def seed_document(auction: ObjectId | str, snapshot: Snapshot) -> Document:
    """A document as the seed's backend writes it: no uniqueViewers, partial or gatewayId."""
    at = datetime.fromtimestamp(snapshot.minute_start, UTC)
    return {
        "auction": auction,
        "timestamp": at,
        "viewerCount": snapshot.viewer_count,
        "avgViewers": snapshot.avg_viewers,
        "peakViewers": snapshot.peak_viewers,
        "minViewers": snapshot.min_viewers,
        "sampleCount": snapshot.sample_count,
        "createdAt": at,
        "updatedAt": at,
        "__v": 0,
    }


async def test_seed_shaped_documents_are_read_by_every_query(database: Database, clock: FakeClock) -> None:
    auction = ObjectId()
    start = int(clock.now) // HOUR * HOUR - 5 * HOUR
    snapshots = [
        make_snapshot(
            str(auction),
            start + 60 * m,
            viewer_count=m % 9 + 1,
            avg_viewers=float(m % 9 + 1),
            peak_viewers=m % 9 + 3,
            min_viewers=m % 9,
            sample_count=m % 12 + 1,
        )
        for m in range(0, 200, 3)
    ]
    # The seed's backend wrote ObjectIds; a version of this product before MONGODB_AUCTION_ID_TYPE
    # wrote the same auction's id as a string. Both are the same auction's history.
    await database.db[SNAPSHOT_COLLECTION].insert_many(
        [seed_document(auction if i % 4 else str(auction), s) for i, s in enumerate(snapshots)]
    )

    async with ingest_on(database, clock) as client:
        for start_at, end_at in [(None, None), (start + 25 * 60, start + 3 * HOUR + 10 * 60)]:
            for bucket in (0, 300, HOUR, 86_400):
                response = await query(client, str(auction), bucket, start_at, end_at)
                expected = expected_points(snapshots, start_at, end_at, bucket)
                got = [
                    (p.bucket_start.seconds, p.avg_viewers, p.peak_viewers, p.min_viewers, p.viewer_count)
                    for p in response.points
                ]
                assert got == [
                    (e.bucket_start, e.avg_viewers, e.peak_viewers, e.min_viewers, e.viewer_count)
                    for e in expected
                ], (start_at, end_at, bucket)
        summary = (await query(client, str(auction))).summary
        assert summary.snapshot_count == len(snapshots)
        assert summary.overall_peak == max(s.peak_viewers for s in snapshots)


async def test_the_seeds_checklist_query_finds_what_the_api_stored(
    database: Database, clock: FakeClock
) -> None:
    auction = ObjectId()
    minute = int(clock.now) - 120
    async with ingest_on(database, clock) as client:
        for auction_id in (str(auction), "slug-1"):
            await client.set_analytics(auction_id, True)
            assert outcome_names(await client.send([make_snapshot(auction_id, minute)])) == ["STORED"]
        # Sent again: still one document, whichever form the id took.
        assert outcome_names(await client.send([make_snapshot(str(auction), minute)])) == ["DUPLICATE"]

    # The seed's operators' check: db.vieweranalytics.find({ auction: ObjectId("…") }).sort({ timestamp: -1 })
    found = (
        await database.db[SNAPSHOT_COLLECTION].find({"auction": auction}).sort({"timestamp": -1}).to_list()
    )
    assert [(document["auction"], document["viewerCount"]) for document in found] == [(auction, 5)]
    # An id that is no ObjectId's text stays a string.
    assert await database.db[SNAPSHOT_COLLECTION].count_documents({"auction": "slug-1"}) == 1


async def test_string_id_type_stores_strings_and_still_reads_object_ids(
    database: Database, clock: FakeClock
) -> None:
    auction = ObjectId()
    minute = int(clock.now) - 120
    await database.db[SNAPSHOT_COLLECTION].insert_one(
        seed_document(auction, make_snapshot(str(auction), minute))
    )
    async with ingest_on(database, clock, MongoSettings(auction_id_type=AuctionIdType.STRING)) as client:
        await client.set_analytics(str(auction), True)
        assert outcome_names(await client.send([make_snapshot(str(auction), minute - 60)])) == ["STORED"]
        assert (await query(client, str(auction))).summary.snapshot_count == 2
    stored = await database.db[SNAPSHOT_COLLECTION].find_one(
        {"timestamp": datetime.fromtimestamp(minute - 60, UTC)}
    )
    assert stored is not None
    assert stored["auction"] == str(auction)


async def test_objectid_id_type_refuses_other_ids(database: Database, clock: FakeClock) -> None:
    async with ingest_on(database, clock, MongoSettings(auction_id_type=AuctionIdType.OBJECTID)) as client:
        acks = await client.send([make_snapshot("slug-1", int(clock.now) - 60)])
        assert outcome_names(acks) == ["REJECTED"]
        assert "ObjectId" in acks[0].detail
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.set_analytics("slug-1", True)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await query(client, str(ObjectId()).upper())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        auction = str(ObjectId())
        await client.set_analytics(auction, True)
        assert outcome_names(await client.send([make_snapshot(auction, int(clock.now) - 60)])) == ["STORED"]


async def test_the_api_says_why_an_objectid_deployment_refuses_an_auction_id(
    database: Database, clock: FakeClock
) -> None:
    """Proves that a GraphQL analytics query for an id an ObjectId deployment refuses is answered
    with that reason: every refusal of the ingest service's analytics query read "the range holds
    more than 20000 points" (the point limit over all data, still said so: test_graphql_ninety_days)."""
    settings = MongoSettings(auction_id_type=AuctionIdType.OBJECTID)
    async with (
        ingest_on(database, clock, settings) as client,
        running_graphql(graphql_config(client.target), clock) as api,
    ):
        refused = await api.execute(ANALYTICS_QUERY, {"id": "slug-1", "range": "ALL"}, token=admin_token())
        assert refused.data == {"auction": None}
        (error,) = refused.errors
        assert "ObjectId" in error["message"], error
        assert "points" not in error["message"], error


async def get_settings(client: IngestClient, auction_id: str) -> settings_pb2.AuctionSettings:
    response: settings_pb2.GetAuctionSettingsResponse = await client.settings.GetAuctionSettings(
        settings_pb2.GetAuctionSettingsRequest(auction_id=auction_id), metadata=client.metadata
    )
    return response.settings


async def test_the_flag_lives_on_the_backends_auction_document(database: Database, clock: FakeClock) -> None:
    auctions = database.db["auctions"]
    auction, unconfigured = ObjectId(), ObjectId()
    await auctions.insert_many(
        [
            {"_id": auction, "title": "Lot 7", "enableViewerAnalytics": False, "currentBid": 120},
            {"_id": unconfigured, "title": "Lot 8"},
        ]
    )
    minute = int(clock.now) - 300
    settings = MongoSettings(auctions_collection="auctions")
    async with ingest_on(database, clock, settings) as client:
        assert not (await get_settings(client, str(auction))).enable_viewer_analytics
        never = await get_settings(client, str(unconfigured))
        assert not never.enable_viewer_analytics
        assert not never.HasField("updated_at")

        clock.advance(0.5)
        changed = await client.set_analytics(str(auction), True)
        assert changed.enable_viewer_analytics
        assert changed.updated_at.seconds == int(clock.now)
        document = await auctions.find_one({"_id": auction})
        assert document is not None
        assert (document["enableViewerAnalytics"], document["title"], document["currentBid"]) == (
            True,
            "Lot 7",
            120,
        )
        assert outcome_names(await client.send([make_snapshot(str(auction), minute)])) == ["STORED"]

        # The backend's settings page turns it off on its own document: the next batch obeys.
        await auctions.update_one({"_id": auction}, {"$set": {"enableViewerAnalytics": False}})
        assert outcome_names(await client.send([make_snapshot(str(auction), minute + 60)])) == [
            "SKIPPED_ANALYTICS_DISABLED"
        ]
        assert not (await get_settings(client, str(auction))).enable_viewer_analytics

        # No document is ever created in the backend's collection, nor in the product's own.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.set_analytics(str(ObjectId()), True)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await auctions.count_documents({}) == 2
    assert await database.db[SETTINGS_COLLECTION].count_documents({}) == 0


async def test_the_graphql_mutation_and_the_backends_settings_page_are_one_switch(
    database: Database, clock: FakeClock
) -> None:
    auctions = database.db["auctions"]
    auction = ObjectId()
    await auctions.insert_one({"_id": auction, "title": "Lot 9", "enableViewerAnalytics": False})
    settings = MongoSettings(auctions_collection="auctions")
    async with (
        ingest_on(database, clock, settings) as client,
        running_graphql(graphql_config(client.target), clock) as api,
    ):
        turned_on = await api.execute(
            SET_ANALYTICS, {"id": str(auction), "enabled": True}, token=admin_token()
        )
        assert turned_on.data["setViewerAnalytics"]["enableViewerAnalytics"] is True
        document = await auctions.find_one({"_id": auction})
        assert document is not None
        assert document["enableViewerAnalytics"] is True

        # The backend's settings page turns it off: the API says so.
        await auctions.update_one({"_id": auction}, {"$set": {"enableViewerAnalytics": False}})
        shown = await api.execute(SETTINGS_QUERY, {"id": str(auction)}, token=admin_token())
        assert shown.data["auction"]["settings"]["enableViewerAnalytics"] is False

        # An id that names no auction is refused as input; nothing is created.
        unknown = await api.execute(
            SET_ANALYTICS, {"id": str(ObjectId()), "enabled": True}, token=admin_token()
        )
        assert unknown.data["setViewerAnalytics"]["__typename"] == "InvalidInput"
        assert "no auction" in unknown.data["setViewerAnalytics"]["message"]
    assert await auctions.count_documents({}) == 1


async def test_seed_documents_without_samples_or_sketches_answer_the_audience_queries(
    database: Database, clock: FakeClock
) -> None:
    """The seed's minutes (no samples, no sketch; ObjectIds and strings) with events sent over gRPC."""
    auction = ObjectId()
    m = int(clock.now) // 60 * 60 - 10 * 60
    minutes = [
        make_snapshot(str(auction), m, viewer_count=8, avg_viewers=10.0, peak_viewers=14, min_viewers=6),
        make_snapshot(
            str(auction), m + 60, viewer_count=20, avg_viewers=22.5, peak_viewers=30, min_viewers=8
        ),
    ]
    await database.db[SNAPSHOT_COLLECTION].insert_many(
        [seed_document(auction, minutes[0]), seed_document(str(auction), minutes[1])]
    )
    async with ingest_on(database, clock) as client:
        await client.set_analytics(str(auction), True)
        # The events name the auction by its ObjectId's text, as the seed's backend does.
        acks = await record(
            client,
            opened("o-1", m + 40, "lot-1", auction=str(auction)),
            bid("b-1", m + 50, "lot-1", "alice", auction=str(auction)),
            closed("c-1", m + 80, "lot-1", events_pb2.LOT_OUTCOME_PASSED, auction=str(auction)),
        )
        assert [ack.outcome for ack in acks] == [events_pb2.AUCTION_EVENT_OUTCOME_STORED] * 3
        stub = audience_grpc.AuctionAudienceServiceStub(client.channel)
        lots = await stub.QueryLotAudience(
            audience_pb2.QueryLotAudienceRequest(auction_id=str(auction)), metadata=client.metadata
        )
        [lot] = lots.lots
        # From minutes: open m+40 in the first minute (mean 10), close m+80 in the second (mean 22.5 -> 22);
        # the lot overlaps both minutes: peak 30, mean (10 + 22.5) / 2.
        assert (lot.viewers_at_open, lot.viewers_at_close, lot.peak_viewers) == (10, 22, 30)
        assert lot.avg_viewers == pytest.approx(16.25)
        assert (lot.bids, lot.bidders, lot.resolution) == (1, 1, audience_pb2.VIEWER_RESOLUTION_MINUTES)
        funnel = await stub.QueryAuctionFunnel(
            audience_pb2.QueryAuctionFunnelRequest(auction_id=str(auction)), metadata=client.metadata
        )
        assert (funnel.bids, funnel.bidders) == (1, 1)
        assert funnel.unique_viewers.estimate == 0
        assert (funnel.unique_viewers.sketched_snapshots, funnel.unique_viewers.unsketched_snapshots) == (
            0,
            2,
        )
