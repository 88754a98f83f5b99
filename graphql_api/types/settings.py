"""An auction's viewer-analytics settings."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graphql_api import analytics


@strawberry.type(description="Whether viewer analytics are collected for an auction.")
class ViewerAnalyticsSettings:
    auction_id: strawberry.ID
    enable_viewer_analytics: bool
    updated_at: datetime | None = strawberry.field(
        description="When the setting last changed; null for an auction never configured (analytics off)."
    )

    @classmethod
    def from_domain(cls, settings: analytics.AuctionSettings) -> ViewerAnalyticsSettings:
        return cls(
            auction_id=strawberry.ID(settings.auction_id),
            enable_viewer_analytics=settings.enable_viewer_analytics,
            updated_at=settings.updated_at,
        )
