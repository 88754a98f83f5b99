"""Viewer counts read against an auction's events: per lot, per bid, and the viewer -> bidder funnel.

Plain computations over stored events and snapshot details; the stores fetch, this module counts.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, LotOutcome
from ingest_service.sketches import UniqueViewerCount
from ingest_service.storage.snapshot_details import SnapshotDetail


class Resolution(enum.IntEnum):
    """Where a viewer figure comes from; a combination of figures has the coarsest one's."""

    NONE = 0
    MINUTES = 1
    SAMPLES = 2


# The per-lot query builds a few of these per lot of an auction (500 lots: thousands a query); a
# NamedTuple is as immutable as a frozen dataclass and several times quicker to build.
class WindowViewers(NamedTuple):
    peak: int
    avg: float
    resolution: Resolution


class ViewerTimeline:
    """An auction's viewers over time, from its snapshots' samples where they have some.

    Sample i of a snapshot was taken at ``minute_start + min((i + 1) * sample_interval, interval)``
    (the gateway's ticks, ``snapshots.aggregation.SampleSchedule``: ``S < tick <= S + interval``, the
    last on the interval's end even when the sample interval does not divide it). A snapshot without
    samples stands for its whole interval
    ``[minute_start, minute_start + interval)`` with its mean and peak.
    """

    def __init__(
        self, details: Sequence[SnapshotDetail], snapshot_interval_seconds: int, sample_interval_seconds: int
    ) -> None:
        self._interval = snapshot_interval_seconds
        self._step = sample_interval_seconds
        self._times: list[int] = []
        self._values: list[int] = []
        self._minutes: list[SnapshotDetail] = []
        for detail in sorted(details, key=lambda each: each.minute_start):
            if detail.samples:
                start, end = detail.minute_start, detail.minute_start + self._interval
                self._times.extend(min(start + (i + 1) * self._step, end) for i in range(len(detail.samples)))
                self._values.extend(detail.samples)
            else:
                self._minutes.append(detail)
        self._minute_starts = [detail.minute_start for detail in self._minutes]

    def _minute_at(self, moment: float) -> SnapshotDetail | None:
        index = bisect.bisect_right(self._minute_starts, moment) - 1
        if index >= 0 and moment < self._minutes[index].minute_start + self._interval:
            return self._minutes[index]
        return None

    def at(self, moment: float) -> tuple[int, Resolution]:
        """Viewers at ``moment``: the nearest sample within one sample interval, else the minute's mean.

        Of two samples equally near, the earlier.
        """
        times = self._times
        index = bisect.bisect_left(times, moment)
        best = -1
        nearest = 0.0
        if index > 0:
            nearest = moment - times[index - 1]
            if nearest <= self._step:
                best = index - 1
        if index < len(times):
            distance = times[index] - moment
            if distance <= self._step and (best < 0 or distance < nearest):
                best = index
        if best >= 0:
            return self._values[best], Resolution.SAMPLES
        minute = self._minute_at(moment)
        if minute is not None:
            return round(minute.avg_viewers), Resolution.MINUTES
        return 0, Resolution.NONE

    def over(self, start: float, end: float) -> WindowViewers:
        """Peak and mean viewers from ``start`` to ``end`` (inclusive).

        The samples inside the window, plus every sample-less snapshot overlapping it; a window too
        short to hold a sample (under one sample interval) takes the figures at its two ends.
        """
        values = self._values[bisect.bisect_left(self._times, start) : bisect.bisect_right(self._times, end)]
        # Sums of whole viewer counts are exact in a float, so summing the samples first and the
        # minutes' means after gives the same mean as summing them one by one in that order.
        total = float(sum(values))
        count = len(values)
        peak = max(values, default=0)
        resolution = Resolution.SAMPLES if values else Resolution.NONE
        if self._minutes:
            first = max(0, bisect.bisect_right(self._minute_starts, start) - 1)
            for minute in self._minutes[first:]:
                if minute.minute_start > end:
                    break
                if minute.minute_start + self._interval <= start:
                    continue
                total += minute.avg_viewers
                count += 1
                peak = max(peak, minute.peak_viewers)
                resolution = Resolution.MINUTES
        if not count:
            ends = [self.at(start), self.at(end)]
            known = [(value, kind) for value, kind in ends if kind is not Resolution.NONE]
            if not known:
                return WindowViewers(0, 0.0, Resolution.NONE)
            return WindowViewers(
                max(value for value, _ in known),
                sum(value for value, _ in known) / len(known),
                min(kind for _, kind in known),
            )
        return WindowViewers(peak, total / count, resolution)


class LotAudience(NamedTuple):
    lot_id: str
    title: str
    opened_at: float
    closed_at: float | None
    outcome: LotOutcome | None
    hammer_price: int
    currency: str
    winner_bidder_id: str
    viewers_at_open: int
    viewers_at_close: int
    peak_viewers: int
    avg_viewers: float
    bids: int
    bidders: int
    resolution: Resolution


class LotClose(NamedTuple):
    """A lot's close as its row needs it: when, how, and (sold) the hammer price and winner."""

    closed_at: float
    outcome: LotOutcome | None
    amount: int
    currency: str
    winner_bidder_id: str


class LotFacts(NamedTuple):
    """What a lot's row takes from its events, before any viewer figure.

    ``opened_at`` and ``title`` are from the lot's first opening, ``close`` its first close (None:
    none yet), and ``bids``, ``bidders`` and ``last_bid_at`` count its bids placed at or after that
    opening (``last_bid_at`` None: no bid).
    """

    lot_id: str
    title: str
    opened_at: float
    close: LotClose | None
    bids: int
    bidders: int
    last_bid_at: float | None


def lot_facts(events: Sequence[AuctionEvent]) -> list[LotFacts]:
    """The facts of each lot opened among ``events`` (oldest first), in the order the lots opened.

    The plain computation over loaded events; the stores keep the same facts as the events arrive
    (``AuctionEventStore.lot_facts``), which the contract tests hold to this. A lot opened twice keeps
    its first opening; a close or a bid for a lot never opened is left out.
    """
    opened: dict[str, AuctionEvent] = {}
    closed: dict[str, AuctionEvent] = {}
    bids: dict[str, list[AuctionEvent]] = {}
    for event in events:
        if event.kind is EventKind.LOT_OPENED:
            opened.setdefault(event.lot_id, event)
        elif event.kind is EventKind.LOT_CLOSED:
            closed.setdefault(event.lot_id, event)
        elif event.kind is EventKind.BID_PLACED:
            bids.setdefault(event.lot_id, []).append(event)
    facts = []
    for opening in sorted(opened.values(), key=lambda each: (each.occurred_at, each.lot_id)):
        close = closed.get(opening.lot_id)
        lot_bids = [bid for bid in bids.get(opening.lot_id, []) if bid.occurred_at >= opening.occurred_at]
        facts.append(
            LotFacts(
                lot_id=opening.lot_id,
                title=opening.title,
                opened_at=opening.occurred_at,
                close=None if close is None else close_of(close),
                bids=len(lot_bids),
                bidders=len({bid.bidder_id for bid in lot_bids}),
                last_bid_at=max((bid.occurred_at for bid in lot_bids), default=None),
            )
        )
    return facts


def close_of(event: AuctionEvent) -> LotClose:
    """A ``lot_closed`` event's close; the price and winner only when the lot sold."""
    sold = event.outcome is LotOutcome.SOLD
    return LotClose(
        closed_at=event.occurred_at,
        outcome=event.outcome,
        amount=event.amount if sold else 0,
        currency=event.currency if sold else "",
        winner_bidder_id=event.bidder_id if sold else "",
    )


def lot_audiences(facts: Sequence[LotFacts], timeline: ViewerTimeline) -> list[LotAudience]:
    """One row per lot, in the order the lots opened, with its viewers from ``timeline``.

    A lot without a close ends at the next lot's opening, else at its last bid, else at its opening.
    """
    order = sorted(facts, key=lambda each: (each.opened_at, each.lot_id))
    rows: list[LotAudience] = []
    for position, lot in enumerate(order):
        close = lot.close
        if close is not None:
            end = close.closed_at
        elif position + 1 < len(order):
            end = order[position + 1].opened_at
        elif lot.last_bid_at is not None:
            end = lot.last_bid_at
        else:
            end = lot.opened_at
        at_open, open_resolution = timeline.at(lot.opened_at)
        at_close, close_resolution = timeline.at(end)
        window = timeline.over(lot.opened_at, end)
        rows.append(
            LotAudience(
                lot_id=lot.lot_id,
                title=lot.title,
                opened_at=lot.opened_at,
                closed_at=close.closed_at if close else None,
                outcome=close.outcome if close else None,
                hammer_price=close.amount if close else 0,
                currency=close.currency if close else "",
                winner_bidder_id=close.winner_bidder_id if close else "",
                viewers_at_open=at_open,
                viewers_at_close=at_close,
                peak_viewers=max(window.peak, at_open, at_close),
                avg_viewers=window.avg,
                bids=lot.bids,
                bidders=lot.bidders,
                resolution=min(open_resolution, close_resolution, window.resolution),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class BidViewers:
    event_id: str
    lot_id: str
    bidder_id: str
    placed_at: float
    amount: int
    currency: str
    channel: BidChannel | None
    viewers: int
    resolution: Resolution


def bids_against_viewers(bids: Sequence[AuctionEvent], timeline: ViewerTimeline) -> list[BidViewers]:
    """Each bid with the viewers watching when it was placed."""
    rows = []
    for bid in bids:
        viewers, resolution = timeline.at(bid.occurred_at)
        rows.append(
            BidViewers(
                bid.event_id,
                bid.lot_id,
                bid.bidder_id,
                bid.occurred_at,
                bid.amount,
                bid.currency,
                bid.channel,
                viewers,
                resolution,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Funnel:
    unique_viewers: UniqueViewerCount
    bidders: int
    bids: int
    lots_sold: int
    winners: int


def funnel(events: Sequence[AuctionEvent], unique_viewers: UniqueViewerCount) -> Funnel:
    """Unique viewers (the store's merged sketches), then bidders and bids, then lots sold and winners.

    The plain computation over loaded events; the service asks the store for the same counts
    (``AuctionEventStore.funnel_counts``), which the contract tests hold to this.
    """
    placed = [event for event in events if event.kind is EventKind.BID_PLACED]
    sold = [
        event for event in events if event.kind is EventKind.LOT_CLOSED and event.outcome is LotOutcome.SOLD
    ]
    return Funnel(
        unique_viewers=unique_viewers,
        bidders=len({bid.bidder_id for bid in placed}),
        bids=len(placed),
        lots_sold=len({close.lot_id for close in sold}),
        winners=len({close.bidder_id for close in sold}),
    )
