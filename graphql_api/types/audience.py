"""An auction's viewers against its lots and bids: the per-lot table, bids, and the funnel."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Protocol

import strawberry
from strawberry.types import Info

from graphql_api import analytics, audience
from graphql_api.context import Context
from graphql_api.errors import AnalyticsUnavailable, BadUserInput
from graphql_api.execution import PointSeries
from graphql_api.ingest import IngestRejected, IngestUnavailable
from graphql_api.types.enums import RangePreset

MAX_BIDS = 1000
MAX_EVENTS_PAGE = 500


@strawberry.enum(description="How a lot closed.")
class LotOutcome(enum.Enum):
    SOLD = "SOLD"
    PASSED = "PASSED"
    WITHDRAWN = "WITHDRAWN"


@strawberry.enum(description="Where a bid came from.")
class BidChannel(enum.Enum):
    ONLINE = "ONLINE"
    FLOOR = "FLOOR"
    ABSENTEE = "ABSENTEE"
    PHONE = "PHONE"


@strawberry.enum(description="What happened in an auction.")
class AuctionEventKind(enum.Enum):
    AUCTION_STARTED = "AUCTION_STARTED"
    AUCTION_ENDED = "AUCTION_ENDED"
    LOT_OPENED = "LOT_OPENED"
    LOT_CLOSED = "LOT_CLOSED"
    BID_PLACED = "BID_PLACED"


@strawberry.enum(description="Where a viewer figure comes from.")
class ViewerResolution(enum.Enum):
    SAMPLES = strawberry.enum_value("SAMPLES", description="The 5-second samples nearest the moment.")
    MINUTES = strawberry.enum_value(
        "MINUTES", description="Whole snapshots (a minute's mean and peak): the snapshots carried no samples."
    )
    NONE = strawberry.enum_value("NONE", description="No snapshot covers it: 0 means unknown.")


@strawberry.type(description="One lot: when it opened and closed, how it went, and who watched.")
class Lot:
    lot_id: str
    title: str
    opened_at: datetime
    closed_at: datetime | None = strawberry.field(description="None while open or when no close arrived.")
    outcome: LotOutcome | None
    hammer_price: int | None = strawberry.field(description="In the currency's minor units; SOLD lots only.")
    currency: str | None = strawberry.field(description="ISO 4217 code of hammerPrice.")
    winner_bidder_id: str | None
    viewers_at_open: int = strawberry.field(description="Viewers when the lot opened.")
    viewers_at_close: int = strawberry.field(
        description="Viewers at the hammer; without a close, at the next lot's opening, else the lot's "
        "last bid, else its opening."
    )
    peak_viewers: int
    avg_viewers: float
    bids: int
    bidders: int
    resolution: ViewerResolution = strawberry.field(description="Where the lot's viewer figures come from.")

    @classmethod
    def from_domain(cls, lot: audience.Lot) -> Lot:
        return cls(
            lot_id=lot.lot_id,
            title=lot.title,
            opened_at=lot.opened_at,
            closed_at=lot.closed_at,
            outcome=LotOutcome(lot.outcome) if lot.outcome else None,
            hammer_price=lot.hammer_price,
            currency=lot.currency,
            winner_bidder_id=lot.winner_bidder_id,
            viewers_at_open=lot.viewers_at_open,
            viewers_at_close=lot.viewers_at_close,
            peak_viewers=lot.peak_viewers,
            avg_viewers=lot.avg_viewers,
            bids=lot.bids,
            bidders=lot.bidders,
            resolution=ViewerResolution(lot.resolution),
        )


@strawberry.type(description="A bid, with the viewers watching when it was placed.")
class BidAgainstViewers:
    lot_id: str
    bidder_id: str
    placed_at: datetime
    amount: int = strawberry.field(description="In the currency's minor units.")
    currency: str
    channel: BidChannel | None
    viewers: int
    resolution: ViewerResolution


@strawberry.type(description="Bids of a range, oldest first.")
class BidsAgainstViewers:
    bids: list[BidAgainstViewers]
    truncated: bool = strawberry.field(description="More bids lie in the range past `first`.")


@strawberry.type(
    description="Distinct viewers from the snapshots' CPC sketches (Apache DataSketches, lg_k 11) merged "
    "over the range: an estimate with a relative standard error of about 1.6%, within its 95% bounds."
)
class UniqueViewerEstimate:
    estimate: float
    lower_bound: float = strawberry.field(description="95% confidence (two standard errors).")
    upper_bound: float
    exact: bool = strawberry.field(description="True only when the bounds equal the estimate.")
    sketched_snapshots: int
    unsketched_snapshots: int = strawberry.field(
        description="Snapshots without a sketch (older gateways, the seed's documents): not counted."
    )

    @classmethod
    def from_domain(cls, unique: analytics.UniqueViewers) -> UniqueViewerEstimate:
        return cls(
            estimate=unique.estimate,
            lower_bound=unique.lower_bound,
            upper_bound=unique.upper_bound,
            exact=unique.exact,
            sketched_snapshots=unique.sketched_snapshots,
            unsketched_snapshots=unique.unsketched_snapshots,
        )


@strawberry.type(description="From watching to buying, over a range.")
class AuctionFunnel:
    unique_viewers: int = strawberry.field(description="Distinct viewers, the estimate rounded.")
    identified_viewers: int = strawberry.field(
        description="Distinct signed-in viewers, the estimate rounded."
    )
    bidders: int = strawberry.field(description="Distinct bidders.")
    bids: int
    lots_sold: int
    winners: int = strawberry.field(description="Distinct winning bidders.")
    unique_viewer_estimate: UniqueViewerEstimate

    @classmethod
    def from_domain(cls, funnel: audience.Funnel) -> AuctionFunnel:
        unique = funnel.unique_viewers
        return cls(
            unique_viewers=round(unique.estimate),
            identified_viewers=round(unique.identified_estimate),
            bidders=funnel.bidders,
            bids=funnel.bids,
            lots_sold=funnel.lots_sold,
            winners=funnel.winners,
            unique_viewer_estimate=UniqueViewerEstimate.from_domain(unique),
        )


@strawberry.type(description="One event the auction platform sent; fields its kind does not carry are null.")
class AuctionEvent:
    event_id: str
    kind: AuctionEventKind
    occurred_at: datetime
    lot_id: str | None
    title: str | None
    outcome: LotOutcome | None
    amount: int | None = strawberry.field(
        description="The bid's amount, or a SOLD lot's hammer price, in the currency's minor units."
    )
    currency: str | None
    bidder_id: str | None = strawberry.field(description="The bidder, or a SOLD lot's winner.")
    channel: BidChannel | None


@strawberry.type(description="A page of events, oldest first.")
class AuctionEventPage:
    events: list[AuctionEvent]
    next_cursor: str | None = strawberry.field(
        description="Pass as `after` (with the same other arguments) for the next page; null on the last."
    )


class HasAuctionId(Protocol):
    id: strawberry.ID


RangeArgument = Annotated[RangePreset | None, strawberry.argument(name="range")]
FromArgument = Annotated[datetime | None, strawberry.argument(name="from", description="Start, inclusive.")]
ToArgument = Annotated[datetime | None, strawberry.argument(description="End, exclusive.")]


def _window(
    info: Info[Context, None], range_: RangePreset | None, from_: datetime | None, to: datetime | None
) -> analytics.TimeWindow:
    context = info.context
    try:
        return analytics.resolve_window(
            range_, from_, to, now=context.clock(), max_range_seconds=context.max_range_seconds
        )
    except analytics.InvalidQuery as invalid:
        raise BadUserInput(str(invalid)) from None


async def resolve_lots(
    root: HasAuctionId,
    info: Info[Context, None],
    range_: RangeArgument = None,
    from_: FromArgument = None,
    to: ToArgument = None,
) -> Sequence[Lot]:
    window = _window(info, range_, from_, to)
    try:
        lots = await audience.AudienceQueries(info.context.ingest).lots(str(root.id), window)
    except IngestRejected as rejected:
        raise BadUserInput(rejected.detail) from None
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    # Completed in bulk (graphql_api.execution): 500 lots of 15 fields each cost graphql-core's
    # general completion about 50 ms of a core, the event loop held throughout.
    return PointSeries([Lot.from_domain(lot) for lot in lots], _same)


def _same(lot: Lot) -> Lot:
    return lot


async def resolve_bids(
    root: HasAuctionId,
    info: Info[Context, None],
    range_: RangeArgument = None,
    from_: FromArgument = None,
    to: ToArgument = None,
    first: Annotated[
        int, strawberry.argument(description=f"At most this many, up to {MAX_BIDS}.")
    ] = MAX_BIDS,
) -> BidsAgainstViewers:
    if not 1 <= first <= MAX_BIDS:
        raise BadUserInput(f"'first' must be between 1 and {MAX_BIDS}")
    window = _window(info, range_, from_, to)
    try:
        bids, truncated = await audience.AudienceQueries(info.context.ingest).bids(
            str(root.id), window, first
        )
    except IngestRejected as rejected:
        raise BadUserInput(rejected.detail) from None
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    return BidsAgainstViewers(
        bids=[
            BidAgainstViewers(
                lot_id=bid.lot_id,
                bidder_id=bid.bidder_id,
                placed_at=bid.placed_at,
                amount=bid.amount,
                currency=bid.currency,
                channel=BidChannel(bid.channel) if bid.channel else None,
                viewers=bid.viewers,
                resolution=ViewerResolution(bid.resolution),
            )
            for bid in bids
        ],
        truncated=truncated,
    )


async def resolve_funnel(
    root: HasAuctionId,
    info: Info[Context, None],
    range_: RangeArgument = None,
    from_: FromArgument = None,
    to: ToArgument = None,
) -> AuctionFunnel:
    window = _window(info, range_, from_, to)
    try:
        funnel = await audience.AudienceQueries(info.context.ingest).funnel(str(root.id), window)
    except IngestRejected as rejected:
        raise BadUserInput(rejected.detail) from None
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    return AuctionFunnel.from_domain(funnel)


async def resolve_events(
    root: HasAuctionId,
    info: Info[Context, None],
    range_: RangeArgument = None,
    from_: FromArgument = None,
    to: ToArgument = None,
    kinds: Annotated[
        list[AuctionEventKind] | None,
        strawberry.argument(description="Only these kinds; default every kind."),
    ] = None,
    first: Annotated[
        int, strawberry.argument(description=f"Page size, up to {MAX_EVENTS_PAGE}.")
    ] = MAX_EVENTS_PAGE,
    after: Annotated[str | None, strawberry.argument(description="The previous page's nextCursor.")] = None,
) -> AuctionEventPage:
    if not 1 <= first <= MAX_EVENTS_PAGE:
        raise BadUserInput(f"'first' must be between 1 and {MAX_EVENTS_PAGE}")
    window = _window(info, range_, from_, to)
    try:
        events, cursor = await audience.AudienceQueries(info.context.ingest).events(
            str(root.id), window, [kind.value for kind in kinds or ()], first, after or ""
        )
    except IngestRejected as rejected:
        raise BadUserInput(rejected.detail) from None
    except IngestUnavailable:
        raise AnalyticsUnavailable() from None
    return AuctionEventPage(
        events=[
            AuctionEvent(
                event_id=event.event_id,
                kind=AuctionEventKind(event.kind),
                occurred_at=event.occurred_at,
                lot_id=event.lot_id,
                title=event.title,
                outcome=LotOutcome(event.outcome) if event.outcome else None,
                amount=event.amount,
                currency=event.currency,
                bidder_id=event.bidder_id,
                channel=BidChannel(event.channel) if event.channel else None,
            )
            for event in events
        ],
        next_cursor=cursor or None,
    )
