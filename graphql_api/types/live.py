"""An auction's live counts, as the ``viewerCount`` subscription sends them."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import ExecutionResult

from graphql_api.live_counts import LiveCount
from graphql_api.subscriptions.shared_events import SharedEvent


@strawberry.type(description="An auction's live counts, from the socket gateway.")
class ViewerCount(SharedEvent):
    auction_id: strawberry.ID
    viewer_count: int = strawberry.field(description="Connections watching (a second tab counts again).")
    unique_viewers: int = strawberry.field(
        description="Distinct viewers watching; never more than viewerCount."
    )
    at: datetime = strawberry.field(description="When the gateway read these counts (UTC).")
    # One execution per document for every subscriber this same event reaches (shared_events.py).
    shared_results: strawberry.Private[dict[Hashable, tuple[Any, ExecutionResult]]] = dataclasses.field(
        default_factory=dict
    )

    @classmethod
    def of(cls, count: LiveCount) -> ViewerCount:
        """The event for ``count``: one object for every subscriber that receives these counts."""
        shared = count.memo.get(cls)
        if shared is None:
            shared = count.memo[cls] = cls.from_domain(count)
        assert isinstance(shared, cls)
        return shared

    @classmethod
    def from_domain(cls, count: LiveCount) -> ViewerCount:
        return cls(
            auction_id=strawberry.ID(count.auction_id),
            viewer_count=count.viewer_count,
            unique_viewers=count.unique_viewers,
            at=datetime.fromtimestamp(count.at, UTC),
        )
