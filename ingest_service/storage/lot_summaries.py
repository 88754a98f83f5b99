"""Per-lot and per-bidder figures kept as the events arrive, and when a kept figure answers a query.

The per-lot query and the funnel would otherwise read every event of the range (an 8-hour auction
holds 50,000 bids). Each store therefore keeps, beside the events:

- per lot, its facts over all its events (:class:`ingest_service.audience.LotFacts`) plus the time of
  its last opening, recomputed from the lot's own events whenever one of them is stored;
- per bidder (SQLite), the first and last bid and how many, counted in the batch's transaction.

A kept figure covers *every* event of its lot or bidder, while a query reads the events from its
range's start on, and the oldest events expire. So a figure answers only when no event it counts
can fall outside what the query would have read: its earliest counted event at or after the query's
start and after the retention horizon (see :func:`horizon`). Anything else (a lot reopened after the
start, a bidder whose bids straddle the range, an auction near the end of its retention) is computed
from the events themselves, as before, so every answer equals the plain computation
(``ingest_service.audience``); the contract tests hold both stores to it.
"""

from __future__ import annotations

import enum

from ingest_service.audience import LotFacts

# Events closer than this to the retention cutoff may already be gone: MongoDB's TTL monitor runs on
# the server's clock, which may be ahead of ours. A figure that counts one is recomputed instead.
EXPIRY_MARGIN_SECONDS = 86_400


def horizon(now: float, retention_seconds: int) -> float:
    """The earliest moment whose events are surely all still stored (and none removed)."""
    return now - retention_seconds + EXPIRY_MARGIN_SECONDS


class LotAnswer(enum.Enum):
    """What a kept lot's facts say to a query of the lots opened from some start on."""

    OUTSIDE = "outside"  # no opening at or after the start: not in the answer
    KEPT = "kept"  # the kept facts are the answer
    RECOMPUTE = "recompute"  # only the lot's events from the start on can say


def lot_answer(facts: LotFacts, last_opened_at: float, since: float | None, horizon_at: float) -> LotAnswer:
    """Whether ``facts`` (over all the lot's events) answer for the lot's events from ``since`` on.

    The plain computation takes the lot's first opening and first close at or after ``since``, and
    its bids at or after that opening. Kept facts used the first opening and close of all time: the
    same when both are at or after ``since``, and after ``horizon_at`` (nothing older removed).
    The SQLite store applies this rule in SQL, as it reads the kept lots (``sqlite_events._KEPT_LOTS``).
    """
    start = float("-inf") if since is None else since
    if last_opened_at < start:
        return LotAnswer.OUTSIDE
    earliest = facts.opened_at if facts.close is None else min(facts.opened_at, facts.close.closed_at)
    if earliest >= max(start, horizon_at):
        return LotAnswer.KEPT
    return LotAnswer.RECOMPUTE
