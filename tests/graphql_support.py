"""Helpers for the GraphQL API's tests: a real server on a free port, a real HTTP client, tokens."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from aiohttp import web

from graphql_api.app import create_app
from graphql_api.auth import Role, issue_token
from graphql_api.config import GraphQLConfig
from tests.support import TEST_KEY

JWT_SECRET = "graphql-test-secret-0123456789abcdef-0123456789"
FRONTEND_ORIGIN = "https://auctions.example"


def graphql_config(ingest_target: str, **overrides: Any) -> GraphQLConfig:
    """The API's configuration for tests: port 0, the test key, the frontend origin allowed."""
    config = GraphQLConfig(
        internal_api_key=TEST_KEY,
        jwt_secret=JWT_SECRET,
        host="127.0.0.1",
        port=0,
        ingest_target=ingest_target,
        allowed_origins=(FRONTEND_ORIGIN,),
    )
    return replace(config, **overrides)


def token(
    role: Role = Role.ADMIN,
    auctions: Sequence[str] = (),
    *,
    lifetime_seconds: float = 3600,
    secret: str = JWT_SECRET,
    subject: str = "user-1",
) -> str:
    """A token signed for the test server; expiry is checked against the real time."""
    return issue_token(
        secret,
        subject=subject,
        role=role,
        auctions=auctions,
        now=time.time(),
        lifetime_seconds=lifetime_seconds,
    )


def admin_token() -> str:
    return token(Role.ADMIN, subject="admin-1")


def seller_token(*auctions: str) -> str:
    return token(Role.SELLER, auctions, subject="seller-1")


@dataclass
class GraphQLResponse:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = self.body.get("errors") or []
        return errors

    def error_codes(self) -> list[str]:
        return [error.get("extensions", {}).get("code", "") for error in self.errors]


@dataclass
class RunningGraphQL:
    """The API served on a loopback port, with an HTTP session to it."""

    base_url: str
    session: aiohttp.ClientSession
    config: GraphQLConfig

    async def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> GraphQLResponse:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.post(
            f"{self.base_url}/graphql", json={"query": query, "variables": variables or {}}, headers=sent
        ) as response:
            return GraphQLResponse(response.status, await response.json())

    async def get(self, path: str, *, token: str | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        """A GET whose body is read before returning (``.text()`` then works on the closed response)."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.get(f"{self.base_url}{path}", headers=headers, **kwargs) as response:
            await response.read()
            return response


@asynccontextmanager
async def running_graphql(
    config: GraphQLConfig, clock: Callable[[], float] = time.time
) -> AsyncIterator[RunningGraphQL]:
    """Serves ``create_app(config)`` on a free loopback port until the block ends."""
    runner = web.AppRunner(create_app(config, clock=clock), shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            yield RunningGraphQL(f"http://127.0.0.1:{port}", session, config)
    finally:
        await runner.cleanup()


SETTINGS_QUERY = """
query Settings($id: ID!) {
  auction(id: $id) { id settings { auctionId enableViewerAnalytics updatedAt } }
}
"""

SET_ANALYTICS = """
mutation Set($id: ID!, $enabled: Boolean!) {
  setViewerAnalytics(auctionId: $id, enabled: $enabled) {
    __typename
    ... on ViewerAnalyticsSettings { auctionId enableViewerAnalytics updatedAt }
    ... on NotAuthorized { message auctionId }
    ... on InvalidInput { message field }
  }
}
"""

ANALYTICS_QUERY = """
query Analytics($id: ID!, $range: RangePreset, $from: DateTime, $to: DateTime, $bucket: Bucket! = AUTO) {
  auction(id: $id) {
    viewerAnalytics(range: $range, from: $from, to: $to, bucket: $bucket) {
      bucketSeconds
      points { at avgViewers peakViewers minViewers viewerCount samples }
      summary { overallPeak overallAvg durationMinutes firstAt lastAt snapshotCount }
    }
  }
}
"""
