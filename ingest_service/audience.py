"""Viewer counts read against an auction's events: per lot, per bid, and the viewer -> bidder funnel.

Plain computations over stored events and snapshot details; the stores fetch, this module counts.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ingest_service.auction_events import AuctionEvent, BidChannel, EventKind, LotOutcome
from ingest_service.sketches import UniqueViewerCount
from ingest_service.storage.snapshot_details import SnapshotDetail


class Resolution(enum.IntEnum):
    """Where a viewer figure comes from; a combination of figures has the coarsest one's."""

    NONE = 0
    MINUTES = 1
    SAMPLES = 2


@dataclass(frozen=True, slots=True)
class WindowViewers:
    peak: int
    avg: float
    resolution: Resolution


class ViewerTimeline:
    """An auction's viewers over time, from its snapshots' samples where they have some.

    Sample i of a snapshot was taken at ``minute_start + (i + 1) * sample_interval`` (the gateway's
    ticks: ``S < tick <= S + interval``). A snapshot without samples stands for its whole interval
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
                for index, value in enumerate(detail.samples):
                    self._times.append(detail.minute_start + (index + 1) * self._step)
                    self._values.append(value)
            else:
                self._minutes.append(detail)
        self._minute_starts = [detail.minute_start for detail in self._minutes]

    def _minute_at(self, moment: float) -> SnapshotDetail | None:
        index = bisect.bisect_right(self._minute_starts, moment) - 1
        if index >= 0 and moment < self._minutes[index].minute_start + self._interval:
            return self._minutes[index]
        return None

    def at(self, moment: float) -> tuple[int, Resolution]:
        """Viewers at ``moment``: the nearest sample within one sample interval, else the minute's mean."""
        index = bisect.bisect_left(self._times, moment)
        best: int | None = None
        for candidate in (index - 1, index):
            if not 0 <= candidate < len(self._times):
                continue
            distance = abs(self._times[candidate] - moment)
            if distance <= self._step and (best is None or distance < abs(self._times[best] - moment)):
                best = candidate
        if best is not None:
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
        low = bisect.bisect_left(self._times, start)
        high = bisect.bisect_right(self._times, end)
        values = self._values[low:high]
        weighted = [(float(value), 1) for value in values]
        peaks = list(values)
        resolution = Resolution.SAMPLES if values else Resolution.NONE
        first = max(0, bisect.bisect_right(self._minute_starts, start) - 1)
        for minute in self._minutes[first:]:
            if minute.minute_start > end:
                break
            if minute.minute_start + self._interval <= start:
                continue
            weighted.append((minute.avg_viewers, 1))
            peaks.append(minute.peak_viewers)
            resolution = Resolution.MINUTES
        if not weighted:
            ends = [self.at(start), self.at(end)]
            known = [(value, kind) for value, kind in ends if kind is not Resolution.NONE]
            if not known:
                return WindowViewers(0, 0.0, Resolution.NONE)
            return WindowViewers(
                max(value for value, _ in known),
                sum(value for value, _ in known) / len(known),
                min(kind for _, kind in known),
            )
        total = sum(value * weight for value, weight in weighted)
        return WindowViewers(max(peaks), total / sum(weight for _, weight in weighted), resolution)


@dataclass(frozen=True, slots=True)
class LotAudience:
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


def lot_audiences(events: Sequence[AuctionEvent], timeline: ViewerTimeline) -> list[LotAudience]:
    """One row per lot opened among ``events`` (oldest first), in the order the lots opened.

    A lot opened twice keeps its first opening; a close or a bid for a lot never opened is left out.
    A lot without a close ends at the next lot's opening, else at its last bid, else at its opening.
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
    order = sorted(opened.values(), key=lambda each: (each.occurred_at, each.lot_id))
    rows: list[LotAudience] = []
    for position, opening in enumerate(order):
        lot_id = opening.lot_id
        close = closed.get(lot_id)
        lot_bids = [bid for bid in bids.get(lot_id, []) if bid.occurred_at >= opening.occurred_at]
        if close is not None:
            end = close.occurred_at
        elif position + 1 < len(order):
            end = order[position + 1].occurred_at
        elif lot_bids:
            end = lot_bids[-1].occurred_at
        else:
            end = opening.occurred_at
        at_open, open_resolution = timeline.at(opening.occurred_at)
        at_close, close_resolution = timeline.at(end)
        window = timeline.over(opening.occurred_at, end)
        sold = close is not None and close.outcome is LotOutcome.SOLD
        rows.append(
            LotAudience(
                lot_id=lot_id,
                title=opening.title,
                opened_at=opening.occurred_at,
                closed_at=close.occurred_at if close else None,
                outcome=close.outcome if close else None,
                hammer_price=close.amount if close and sold else 0,
                currency=close.currency if close and sold else "",
                winner_bidder_id=close.bidder_id if close and sold else "",
                viewers_at_open=at_open,
                viewers_at_close=at_close,
                peak_viewers=max(window.peak, at_open, at_close),
                avg_viewers=window.avg,
                bids=len(lot_bids),
                bidders=len({bid.bidder_id for bid in lot_bids}),
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
