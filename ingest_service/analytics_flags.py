"""Each auction's ``enableViewerAnalytics`` flag for a batch: one lookup per batch, optionally cached."""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection
from typing import Protocol

from ingest_service.domain import AuctionSettings

logger = logging.getLogger(__name__)


class SettingsLookup(Protocol):
    """The one thing the cache needs from a store."""

    async def get_settings(self, auction_ids: Collection[str]) -> dict[str, AuctionSettings]: ...


class AnalyticsFlagCache:
    """Looks up a batch's flags in one call; with ``max_age_seconds`` > 0 remembers them that long.

    With no age (the default) every batch reads the flags the store holds at that moment, so any
    number of ingest replicas (and the backend, when the flag lives on its auction documents)
    agree: a change is in force for every batch whose lookup starts after the change's write was
    acknowledged. A positive age saves that lookup at the price of this agreement: a change made
    elsewhere takes up to that long to be seen here (one made through this process is seen at
    once, as ``SetViewerAnalytics`` updates the cache as it writes). Bounded to ``max_entries``
    auctions, least recently used out.
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
        # Auctions looked up, by "hit" (answered from the cache) and "miss" (read from the store).
        self.lookups: Counter[str] = Counter()
        if max_age_seconds > 0:
            logger.warning(
                "Flags are cached: a change made through another ingest replica, or by the backend, "
                "is seen here only up to INGEST_FLAG_CACHE_SECONDS later",
                extra={"flag_cache_seconds": max_age_seconds},
            )

    async def enabled_auctions(self, auction_ids: Collection[str]) -> set[str]:
        """Those of ``auction_ids`` whose analytics are enabled; unknown auctions are disabled."""
        if self._max_age_seconds <= 0:
            self.lookups["miss"] += len(auction_ids)
            found = await self._store.get_settings(auction_ids)
            return {auction_id for auction_id, settings in found.items() if settings.enable_viewer_analytics}
        now = self._clock()
        enabled: set[str] = set()
        missing: list[str] = []
        for auction_id in auction_ids:
            entry = self._entries.get(auction_id)
            if entry is None or now - entry[1] > self._max_age_seconds:
                missing.append(auction_id)
            elif entry[0]:
                enabled.add(auction_id)
        self.lookups["hit"] += len(auction_ids) - len(missing)
        self.lookups["miss"] += len(missing)
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
        if self._max_age_seconds <= 0:
            return
        self._put(settings.auction_id, settings.enable_viewer_analytics, self._clock())

    def _put(self, auction_id: str, enabled: bool, at: float) -> None:
        self._entries[auction_id] = (enabled, at)
        self._entries.move_to_end(auction_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
