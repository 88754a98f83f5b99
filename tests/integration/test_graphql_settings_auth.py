"""Settings through the GraphQL API, and who may read and change them (real ingest, real HTTP)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import datetime

import jwt
import pytest
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2

from graphql_api.auth import Role
from tests.conftest import RunningIngest
from tests.graphql_support import (
    JWT_SECRET,
    SET_ANALYTICS,
    SETTINGS_QUERY,
    RunningGraphQL,
    admin_token,
    graphql_config,
    running_graphql,
    seller_token,
    token,
)


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


async def stored_flag(ingest: RunningIngest, auction_id: str) -> bool:
    """The flag as the ingest service holds it, read over gRPC rather than through the API."""
    client = ingest.client()
    response = await client.settings.GetAuctionSettings(
        settings_pb2.GetAuctionSettingsRequest(auction_id=auction_id), metadata=client.metadata
    )
    return bool(response.settings.enable_viewer_analytics)


async def test_settings_round_trip_through_mutation_and_query(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    before = await api.execute(SETTINGS_QUERY, {"id": "auction-7"}, token=admin_token())
    assert before.status == 200
    assert before.errors == []
    assert before.data == {
        "auction": {
            "id": "auction-7",
            "settings": {"auctionId": "auction-7", "enableViewerAnalytics": False, "updatedAt": None},
        }
    }

    ingest.clock.advance(90)
    turned_on = await api.execute(SET_ANALYTICS, {"id": "auction-7", "enabled": True}, token=admin_token())
    result = turned_on.data["setViewerAnalytics"]
    assert result["__typename"] == "ViewerAnalyticsSettings"
    assert result["enableViewerAnalytics"] is True
    assert datetime.fromisoformat(result["updatedAt"]).timestamp() == ingest.clock.now
    assert await stored_flag(ingest, "auction-7") is True

    after = await api.execute(SETTINGS_QUERY, {"id": "auction-7"}, token=admin_token())
    assert after.data["auction"]["settings"] == {
        "auctionId": "auction-7",
        "enableViewerAnalytics": True,
        "updatedAt": result["updatedAt"],
    }

    ingest.clock.advance(60)
    turned_off = await api.execute(SET_ANALYTICS, {"id": "auction-7", "enabled": False}, token=admin_token())
    assert turned_off.data["setViewerAnalytics"]["enableViewerAnalytics"] is False
    assert await stored_flag(ingest, "auction-7") is False
    final = await api.execute(SETTINGS_QUERY, {"id": "auction-7"}, token=admin_token())
    assert final.data["auction"]["settings"]["enableViewerAnalytics"] is False
    assert (
        datetime.fromisoformat(final.data["auction"]["settings"]["updatedAt"]).timestamp() == ingest.clock.now
    )


def unsigned_token() -> str:
    """A token with ``"alg": "none"`` and no signature, claiming to be an admin."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': 'x', 'role': 'admin', 'exp': 4102444800})}."


REFUSED_TOKENS = {
    "none": None,
    "garbage": "not-a-jwt",
    "expired": token(Role.ADMIN, lifetime_seconds=-120),
    "wrong-secret": token(Role.ADMIN, secret="another-secret-that-is-long-enough-0123456789"),
    "alg-none": unsigned_token(),
    "no-exp": jwt.encode({"sub": "x", "role": "admin"}, JWT_SECRET, algorithm="HS256"),
    "unknown-role": jwt.encode(
        {"sub": "x", "role": "root", "exp": 4102444800}, JWT_SECRET, algorithm="HS256"
    ),
}


@pytest.mark.parametrize("name", REFUSED_TOKENS)
async def test_missing_or_bad_token_is_an_authentication_error(
    api: RunningGraphQL, ingest: RunningIngest, name: str
) -> None:
    presented = REFUSED_TOKENS[name]
    read = await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=presented)
    assert read.data == {"auction": None}
    assert read.error_codes() == ["UNAUTHENTICATED"]

    write = await api.execute(SET_ANALYTICS, {"id": "auction-1", "enabled": True}, token=presented)
    assert write.data is None
    assert write.error_codes() == ["UNAUTHENTICATED"]
    assert await stored_flag(ingest, "auction-1") is False


async def test_authentication_error_says_why(api: RunningGraphQL) -> None:
    missing = await api.execute(SETTINGS_QUERY, {"id": "auction-1"})
    assert "Authorization: Bearer" in missing.errors[0]["message"]
    expired = await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=REFUSED_TOKENS["expired"])
    assert expired.errors[0]["message"] == "authentication failed: token has expired"
    forged = await api.execute(SETTINGS_QUERY, {"id": "auction-1"}, token=REFUSED_TOKENS["wrong-secret"])
    assert forged.errors[0]["message"] == "authentication failed: token is not valid"


async def test_admin_reads_and_changes_any_auction(api: RunningGraphQL, ingest: RunningIngest) -> None:
    for auction_id in ("auction-1", "auction-2"):
        changed = await api.execute(SET_ANALYTICS, {"id": auction_id, "enabled": True}, token=admin_token())
        assert changed.data["setViewerAnalytics"]["__typename"] == "ViewerAnalyticsSettings"
        read = await api.execute(SETTINGS_QUERY, {"id": auction_id}, token=admin_token())
        assert read.data["auction"]["settings"]["enableViewerAnalytics"] is True
        assert await stored_flag(ingest, auction_id) is True


async def test_seller_reads_and_changes_own_auction(api: RunningGraphQL, ingest: RunningIngest) -> None:
    seller = seller_token("auction-own", "auction-also-own")
    changed = await api.execute(SET_ANALYTICS, {"id": "auction-own", "enabled": True}, token=seller)
    assert changed.errors == []
    assert changed.data["setViewerAnalytics"]["__typename"] == "ViewerAnalyticsSettings"
    read = await api.execute(SETTINGS_QUERY, {"id": "auction-own"}, token=seller)
    assert read.data["auction"]["settings"]["enableViewerAnalytics"] is True
    assert await stored_flag(ingest, "auction-own") is True


async def test_seller_of_other_auctions_is_not_authorized(api: RunningGraphQL, ingest: RunningIngest) -> None:
    seller = seller_token("auction-own")
    changed = await api.execute(SET_ANALYTICS, {"id": "auction-other", "enabled": True}, token=seller)
    assert changed.errors == []
    assert changed.data["setViewerAnalytics"] == {
        "__typename": "NotAuthorized",
        "message": "not authorized for this auction",
        "auctionId": "auction-other",
    }
    assert await stored_flag(ingest, "auction-other") is False

    read = await api.execute(SETTINGS_QUERY, {"id": "auction-other"}, token=seller)
    assert read.data == {"auction": None}
    assert read.error_codes() == ["NOT_AUTHORIZED"]


@pytest.mark.parametrize("auction_id", ["", "has space", "x" * 129, "-leading-dash"])
async def test_malformed_auction_id_is_invalid_input(api: RunningGraphQL, auction_id: str) -> None:
    changed = await api.execute(SET_ANALYTICS, {"id": auction_id, "enabled": True}, token=admin_token())
    result = changed.data["setViewerAnalytics"]
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == "auctionId"

    read = await api.execute(SETTINGS_QUERY, {"id": auction_id}, token=admin_token())
    assert read.error_codes() == ["BAD_USER_INPUT"]
