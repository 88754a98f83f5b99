"""An auction's live counts, as the ``viewerCount`` subscription sends them."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from graphql_api.live_counts import LiveCount


@strawberry.type(description="An auction's live counts, from the socket gateway.")
class ViewerCount:
    auction_id: strawberry.ID
    viewer_count: int = strawberry.field(description="Connections watching (a second tab counts again).")
    unique_viewers: int = strawberry.field(
        description="Distinct viewers watching; never more than viewerCount."
    )
    at: datetime = strawberry.field(description="When the gateway read these counts (UTC).")

    @classmethod
    def from_domain(cls, count: LiveCount) -> ViewerCount:
        return cls(
            auction_id=strawberry.ID(count.auction_id),
            viewer_count=count.viewer_count,
            unique_viewers=count.unique_viewers,
            at=datetime.fromtimestamp(count.at, UTC),
        )
