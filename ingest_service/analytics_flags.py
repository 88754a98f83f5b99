"""A cache of each auction's ``enableViewerAnalytics`` flag, so a batch costs at most one lookup."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Protocol

from ingest_service.domain import AuctionSettings


class SettingsLookup(Protocol):
    """The one thing the cache needs from a store."""

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]: ...


class AnalyticsFlagCache:
    """Remembers flags for ``max_age_seconds``, bounded to ``max_entries`` auctions (least recent out).

    ``SetViewerAnalytics`` in this process updates the cache as it writes, so this process never
    reads a stale flag; the age limit bounds how long a change made through another ingest
    replica takes to be seen here.
    """

    def __init__(
        self,
        store: SettingsLookup,
        *,
        max_age_seconds: float,
        clock: Callable[[], float],
        max_entries: int = 100_000,
    ) -> None:
        self._store = store
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bool, float]] = OrderedDict()

    async def enabled_auctions(self, auction_ids: Collection[str]) -> set[str]:
        """Those of ``auction_ids`` whose analytics are enabled; unknown auctions are disabled."""
        now = self._clock()
        enabled: set[str] = set()
        missing: list[str] = []
        for auction_id in auction_ids:
            entry = self._entries.get(auction_id)
            if entry is None or now - entry[1] > self._max_age_seconds:
                missing.append(auction_id)
            elif entry[0]:
                enabled.add(auction_id)
        if missing:
            found = await self._store.get_settings(missing)
            for auction_id in missing:
                settings = found.get(auction_id) or AuctionSettings.never_configured(auction_id)
                self._put(auction_id, settings.enable_viewer_analytics, now)
                if settings.enable_viewer_analytics:
                    enabled.add(auction_id)
        return enabled

    def remember(self, settings: AuctionSettings) -> None:
        """Records a flag just written to the store."""
        self._put(settings.auction_id, settings.enable_viewer_analytics, self._clock())

    def _put(self, auction_id: str, enabled: bool, at: float) -> None:
        self._entries[auction_id] = (enabled, at)
        self._entries.move_to_end(auction_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
