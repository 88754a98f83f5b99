"""An auction run: lots opening and closing, with bids from signed-in simulated viewers, sent to the
ingest service's ``AuctionEventService`` as the auction platform's backend sends them.

Each simulated auction gets its own sequence of lots. While a lot is up, the signed-in viewers in
its room (a share of the simulated viewers; their viewer id is their bidder id) bid at random
times, each bid above the last; some lots draw no bid and pass. At the hammer a lot with bids is
SOLD to its last bidder, now and then one is WITHDRAWN. Every event goes out as it happens, one
``RecordAuctionEvents`` call each, so the dashboard's per-lot table fills in while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2
from viewer_analytics.v1 import auction_event_service_pb2_grpc as events_grpc
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc

from service_common.internal_auth import internal_key_metadata

logger = logging.getLogger(__name__)

E = events_pb2
# One call may take this long before the event counts as failed (the run goes on).
CALL_TIMEOUT_SECONDS = 10.0
TITLES = (
    "Tea bowl",
    "Ink stone",
    "Lacquer box",
    "Hanging scroll",
    "Celadon vase",
    "Folding screen",
    "Bronze mirror",
    "Netsuke",
    "Woodblock print",
    "Silk kimono",
    "Iron kettle",
    "Porcelain plate",
)
CURRENCY = "EUR"
# Starting prices and increments in minor units (cents).
OPENING_BID = 10_000
INCREMENT = 500
# Of the lots that drew bids, this share is withdrawn at the hammer instead of sold.
WITHDRAWN_SHARE = 0.1
# Lots that draw no bid at all, whoever watches: the dashboard picks out those that many watched.
UNWANTED_SHARE = 0.25


@dataclass(frozen=True)
class AuctionRunConfig:
    """What the auction run does.

    Args:
        ingest_target: the ingest service's gRPC address, e.g. ``127.0.0.1:50051`` (plaintext).
        internal_key: its internal key (``INTERNAL_API_KEY``), sent as ``x-internal-request``.
        lots: lots per auction.
        lot_seconds: how long each lot is up, from its opening to its hammer.
        pause_seconds: between one lot's hammer and the next lot's opening (and before the first).
        bids_per_lot: bids a wanted lot draws on average (while signed-in viewers are in its room).
        signed_in_share: the share of simulated viewers who are signed in, and so may bid.
        enable_analytics: turn each auction's analytics on first (events of an auction whose
            analytics are off are skipped by the ingest service, as its snapshots are).
    """

    ingest_target: str
    internal_key: str
    lots: int = 10
    lot_seconds: float = 20.0
    pause_seconds: float = 3.0
    bids_per_lot: float = 4.0
    signed_in_share: float = 0.3
    enable_analytics: bool = False


@dataclass
class AuctionProgress:
    """What the auction run has sent, and what the ingest service answered."""

    lots_opened: int = 0
    lots_closed: int = 0
    bids: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    # Set when the ingest service refused the key or could not be reached at all: the run stops.
    problem: str = ""

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def line(self) -> str:
        answered = " ".join(f"{name.lower()} {count}" for name, count in sorted(self.outcomes.items()))
        failed = f" failed {self.failed}" if self.failed else ""
        lots = f"lots {self.lots_closed}/{self.lots_opened} bids {self.bids}"
        return f"{lots} events: {answered or 'none yet'}{failed}"


# Who may bid in a room now: the signed-in viewers in it (their viewer ids).
BiddersIn = Callable[[str], Sequence[str]]


class AuctionRun:
    """Runs lots on every auction concurrently and sends their events."""

    def __init__(
        self,
        config: AuctionRunConfig,
        auction_ids: Sequence[str],
        bidders_in: BiddersIn,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.auction_ids = list(auction_ids)
        self.bidders_in = bidders_in
        self.random = random.Random(seed)
        self.clock = clock
        self.progress = AuctionProgress()
        # Event ids unique to this run, so that a second run is not taken for re-sends of the first.
        self._run_id = secrets.token_hex(4)
        self._sequence = 0

    async def run(self, ending: asyncio.Event) -> AuctionProgress:
        """Runs every auction's lots until they are done or ``ending`` is set (the lot up is closed)."""
        metadata = internal_key_metadata(self.config.internal_key)
        async with grpc.aio.insecure_channel(self.config.ingest_target) as channel:
            self._events = events_grpc.AuctionEventServiceStub(channel)
            self._metadata = metadata
            if self.config.enable_analytics:
                settings = settings_grpc.AuctionSettingsServiceStub(channel)
                for auction_id in self.auction_ids:
                    if not await self._call_settings(settings, auction_id):
                        return self.progress
            await asyncio.gather(*(self._auction(auction_id, ending) for auction_id in self.auction_ids))
        return self.progress

    async def _call_settings(self, stub: settings_grpc.AuctionSettingsServiceStub, auction_id: str) -> bool:
        try:
            await stub.SetViewerAnalytics(
                settings_pb2.SetViewerAnalyticsRequest(auction_id=auction_id, enabled=True),
                metadata=self._metadata,
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            self.progress.problem = _problem(self.config.ingest_target, error)
            return False
        return True

    async def _auction(self, auction_id: str, ending: asyncio.Event) -> None:
        await self._send(auction_id, auction_started=E.AuctionStarted())
        for number in range(1, self.config.lots + 1):
            if self.progress.problem or await _wait_or_end(ending, self.config.pause_seconds):
                break
            await self._lot(auction_id, number, ending)
        if not self.progress.problem:
            await self._send(auction_id, auction_ended=E.AuctionEnded())

    async def _lot(self, auction_id: str, number: int, ending: asyncio.Event) -> None:
        # The run's id in the lot's: a second run on the same auction has lots of its own.
        lot_id = f"lot-{number}-{self._run_id[:4]}"
        title = TITLES[(number - 1) % len(TITLES)]
        await self._send(auction_id, lot_opened=E.LotOpened(lot_id=lot_id, title=title))
        self.progress.lots_opened += 1
        wanted = self.random.random() >= UNWANTED_SHARE
        closes_at = asyncio.get_running_loop().time() + self.config.lot_seconds
        rate = self.config.bids_per_lot / self.config.lot_seconds if wanted else 0.0
        price = OPENING_BID
        last_bidder = ""
        while not self.progress.problem:
            remaining = closes_at - asyncio.get_running_loop().time()
            wait = min(self.random.expovariate(rate), remaining) if rate > 0 else remaining
            if await _wait_or_end(ending, max(0.0, wait)) or wait >= remaining:
                break
            # Someone else than the highest bidder, among the signed-in viewers watching now.
            candidates = [bidder for bidder in self.bidders_in(auction_id) if bidder != last_bidder]
            if not candidates:
                continue
            last_bidder = self.random.choice(candidates)
            channel = self.random.choice((E.BID_CHANNEL_ONLINE,) * 4 + (E.BID_CHANNEL_PHONE,))
            await self._send(
                auction_id,
                bid_placed=E.BidPlaced(
                    lot_id=lot_id, bidder_id=last_bidder, amount=price, currency=CURRENCY, channel=channel
                ),
            )
            self.progress.bids += 1
            price += INCREMENT
        if self.progress.problem:
            return
        if not last_bidder:
            close = E.LotClosed(lot_id=lot_id, outcome=E.LOT_OUTCOME_PASSED)
        elif self.random.random() < WITHDRAWN_SHARE:
            close = E.LotClosed(lot_id=lot_id, outcome=E.LOT_OUTCOME_WITHDRAWN)
        else:
            close = E.LotClosed(
                lot_id=lot_id,
                outcome=E.LOT_OUTCOME_SOLD,
                hammer_price=price - INCREMENT,
                currency=CURRENCY,
                winner_bidder_id=last_bidder,
            )
        await self._send(auction_id, lot_closed=close)
        self.progress.lots_closed += 1

    async def _send(self, auction_id: str, **kind: object) -> None:
        self._sequence += 1
        now = self.clock()
        event = E.AuctionEvent(
            event_id=f"sim-{self._run_id}-{self._sequence}",
            auction_id=auction_id,
            occurred_at=Timestamp(seconds=int(now), nanos=int(now % 1 * 1e9)),
            **kind,  # type: ignore[arg-type]
        )
        try:
            response = await self._events.RecordAuctionEvents(
                E.RecordAuctionEventsRequest(events=[event]),
                metadata=self._metadata,
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED):
                self.progress.problem = _problem(self.config.ingest_target, error)
            else:
                # The ingest service away or slow: this event is lost, the run goes on.
                self.progress.failed += 1
                logger.debug("An event was not recorded: %s", error.details())
            return
        for ack in response.acks:
            outcome = E.AuctionEventOutcome.Name(ack.outcome).removeprefix("AUCTION_EVENT_OUTCOME_")
            self.progress.count(outcome)
            if ack.detail:
                logger.warning("Event %s %s: %s", ack.event_id, outcome.lower(), ack.detail)


def _problem(target: str, error: grpc.aio.AioRpcError) -> str:
    if error.code() is grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"the ingest service at {target} refused the internal key (set INTERNAL_API_KEY to the stack's)"
        )
    if error.code() is grpc.StatusCode.UNIMPLEMENTED:
        return f"the ingest service at {target} does not record auction events"
    return f"the ingest service at {target} did not answer ({error.code().name})"


async def _wait_or_end(ending: asyncio.Event, seconds: float) -> bool:
    """Waits ``seconds`` or until ``ending`` is set; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ending.wait(), seconds)
    return ending.is_set()
