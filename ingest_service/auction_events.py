"""Auction events (lots opening and closing, bids): their domain types, rules, and each one's fate."""

from __future__ import annotations

import enum
import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from ingest_service.analytics_flags import AnalyticsFlagCache
from ingest_service.domain import AuctionIdType
from ingest_service.validation import accepted_auction_id_problem

logger = logging.getLogger(__name__)

MAX_EVENT_ID_LENGTH = 128
MAX_LOT_ID_LENGTH = 128
MAX_BIDDER_ID_LENGTH = 128
MAX_TITLE_LENGTH = 500
# Far above any hammer price in minor units, below what a signed 64-bit column and a double hold exactly.
MAX_AMOUNT = 2**53
_CURRENCY = re.compile(r"[A-Z]{3}")


class EventKind(enum.Enum):
    AUCTION_STARTED = "auction_started"
    AUCTION_ENDED = "auction_ended"
    LOT_OPENED = "lot_opened"
    LOT_CLOSED = "lot_closed"
    BID_PLACED = "bid_placed"


class LotOutcome(enum.Enum):
    SOLD = "sold"
    PASSED = "passed"
    WITHDRAWN = "withdrawn"


class BidChannel(enum.Enum):
    ONLINE = "online"
    FLOOR = "floor"
    ABSENTEE = "absentee"
    PHONE = "phone"


class EventOutcome(enum.Enum):
    """What became of one received event (mirrors the wire enum ``AuctionEventOutcome``)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    SKIPPED_ANALYTICS_DISABLED = "skipped_analytics_disabled"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class AuctionEvent:
    """One event of an auction; fields that the kind does not carry keep their empty defaults.

    ``occurred_at`` is epoch seconds (UTC, with a fraction). ``amount`` is the bid's amount or the
    lot's hammer price, in the currency's minor units; ``bidder_id`` the bidder or the winner.
    """

    event_id: str
    auction_id: str
    occurred_at: float
    kind: EventKind
    lot_id: str = ""
    title: str = ""
    outcome: LotOutcome | None = None
    amount: int = 0
    currency: str = ""
    bidder_id: str = ""
    channel: BidChannel | None = None


@dataclass(frozen=True, slots=True)
class EventRejection:
    """A received event that could not even be read as one (no kind, no timestamp)."""

    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class EventResult:
    outcome: EventOutcome
    detail: str = ""


@dataclass(frozen=True)
class EventRules:
    """What an event must satisfy to be stored: the snapshots' id rule, clock bounds and retention."""

    retention_seconds: int
    # Events may be stamped by the backend's clock a little ahead of ours.
    max_future_seconds: int = 120
    auction_id_type: AuctionIdType = AuctionIdType.AUTO

    def problem(self, event: AuctionEvent, now: float) -> str | None:
        """Why ``event`` must be rejected at time ``now`` (epoch seconds), or None if it is valid."""
        if not event.event_id:
            return "event_id is missing"
        if len(event.event_id) > MAX_EVENT_ID_LENGTH:
            return f"event_id is longer than {MAX_EVENT_ID_LENGTH} characters"
        id_problem = accepted_auction_id_problem(event.auction_id, self.auction_id_type)
        if id_problem:
            return id_problem
        if event.occurred_at > now + self.max_future_seconds:
            return f"occurred_at is more than {self.max_future_seconds} seconds in the future"
        if event.occurred_at < now - self.retention_seconds:
            return "occurred_at is older than the retention period"
        if event.kind in (EventKind.AUCTION_STARTED, EventKind.AUCTION_ENDED):
            return None
        if not event.lot_id:
            return "lot_id is missing"
        if len(event.lot_id) > MAX_LOT_ID_LENGTH:
            return f"lot_id is longer than {MAX_LOT_ID_LENGTH} characters"
        if event.kind is EventKind.LOT_OPENED:
            if len(event.title) > MAX_TITLE_LENGTH:
                return f"title is longer than {MAX_TITLE_LENGTH} characters"
            return None
        if event.kind is EventKind.LOT_CLOSED:
            return self._close_problem(event)
        return self._bid_problem(event)

    @staticmethod
    def _close_problem(event: AuctionEvent) -> str | None:
        if event.outcome is None:
            return "lot_closed.outcome must be SOLD, PASSED or WITHDRAWN"
        if event.outcome is not LotOutcome.SOLD:
            if event.amount or event.currency or event.bidder_id:
                return "hammer_price, currency and winner_bidder_id are for a SOLD lot only"
            return None
        if not 0 < event.amount <= MAX_AMOUNT:
            return f"hammer_price of a SOLD lot must be between 1 and {MAX_AMOUNT} minor units"
        if not _CURRENCY.fullmatch(event.currency):
            return "currency must be an ISO 4217 code: three upper-case letters"
        if not event.bidder_id:
            return "winner_bidder_id of a SOLD lot is missing"
        if len(event.bidder_id) > MAX_BIDDER_ID_LENGTH:
            return f"winner_bidder_id is longer than {MAX_BIDDER_ID_LENGTH} characters"
        return None

    @staticmethod
    def _bid_problem(event: AuctionEvent) -> str | None:
        if not event.bidder_id:
            return "bidder_id is missing"
        if len(event.bidder_id) > MAX_BIDDER_ID_LENGTH:
            return f"bidder_id is longer than {MAX_BIDDER_ID_LENGTH} characters"
        if not 0 < event.amount <= MAX_AMOUNT:
            return f"amount must be between 1 and {MAX_AMOUNT} minor units"
        if not _CURRENCY.fullmatch(event.currency):
            return "currency must be an ISO 4217 code: three upper-case letters"
        if event.channel is None:
            return "channel must be ONLINE, FLOOR, ABSENTEE or PHONE"
        return None


class EventWriter(Protocol):
    """What recording needs from a store."""

    async def insert_events(self, events: Sequence[AuctionEvent]) -> list[EventOutcome]:
        """Stores each event unless one with its ``event_id`` exists: ``STORED`` or ``DUPLICATE`` each."""
        ...


class AuctionEventRecorder:
    """Validates a batch of events, skips those of analytics-disabled auctions, stores the rest at once."""

    def __init__(
        self,
        store: EventWriter,
        flags: AnalyticsFlagCache,
        rules: EventRules,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._flags = flags
        self._rules = rules
        self._clock = clock

    async def record(self, batch: Sequence[AuctionEvent | EventRejection]) -> list[EventResult]:
        """The result of each event of ``batch``, in order.

        Raises:
            StorageUnavailable: the store could not be read or written; nothing is acknowledged and
                re-sending the batch is safe (idempotent on ``event_id``).
        """
        now = self._clock()
        results: list[EventResult | None] = [None] * len(batch)
        valid: list[tuple[int, AuctionEvent]] = []
        for position, item in enumerate(batch):
            if isinstance(item, EventRejection):
                results[position] = EventResult(EventOutcome.REJECTED, item.reason)
                continue
            problem = self._rules.problem(item, now)
            if problem is None:
                valid.append((position, item))
            else:
                results[position] = EventResult(EventOutcome.REJECTED, problem)
        if valid:
            enabled = await self._flags.enabled_auctions({event.auction_id for _, event in valid})
            to_store = [(position, event) for position, event in valid if event.auction_id in enabled]
            for position, event in valid:
                if event.auction_id not in enabled:
                    results[position] = EventResult(EventOutcome.SKIPPED_ANALYTICS_DISABLED)
            if to_store:
                outcomes = await self._store.insert_events([event for _, event in to_store])
                for (position, _), outcome in zip(to_store, outcomes, strict=True):
                    results[position] = EventResult(outcome)
        final = [result for result in results if result is not None]
        counts = Counter(result.outcome.value for result in final)
        logger.info("Auction events recorded", extra={"received": len(final), **counts})
        return final


def kinds_filter(kinds: Collection[EventKind]) -> list[str]:
    """The stored names of ``kinds``; every kind when it is empty."""
    return [kind.value for kind in (kinds or EventKind)]
