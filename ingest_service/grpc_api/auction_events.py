"""``AuctionEventService`` and ``AuctionAudienceService``: auction events in, viewers against them out."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2

from ingest_service import audience
from ingest_service.auction_events import (
    AuctionEvent,
    AuctionEventRecorder,
    BidChannel,
    EventKind,
    EventOutcome,
    EventRejection,
    LotOutcome,
)
from ingest_service.domain import AnalyticsRange, AuctionIdType, StorageUnavailable
from ingest_service.grpc_api.aborts import abort, abort_storage_unavailable
from ingest_service.grpc_api.conversions import timestamp_of
from ingest_service.metrics import IngestMetrics
from ingest_service.sketches import UniqueViewerCount
from ingest_service.storage.event_port import AuctionEventStore
from ingest_service.storage.port import SnapshotStore
from ingest_service.validation import accepted_auction_id_problem
from service_common.log_limits import RateLimitedLog
from service_common.timing import SnapshotTiming

# A batch's events are validated and written at once; far above what a backend sends per call.
MAX_EVENTS_PER_BATCH = 10_000
MAX_BIDS = 1000
MAX_EVENTS_PAGE = 500

_OUTCOME_TO_WIRE = {
    EventOutcome.STORED: events_pb2.AUCTION_EVENT_OUTCOME_STORED,
    EventOutcome.DUPLICATE: events_pb2.AUCTION_EVENT_OUTCOME_DUPLICATE,
    EventOutcome.SKIPPED_ANALYTICS_DISABLED: events_pb2.AUCTION_EVENT_OUTCOME_SKIPPED_ANALYTICS_DISABLED,
    EventOutcome.REJECTED: events_pb2.AUCTION_EVENT_OUTCOME_REJECTED,
}
_LOT_OUTCOME_FROM_WIRE = {
    events_pb2.LOT_OUTCOME_SOLD: LotOutcome.SOLD,
    events_pb2.LOT_OUTCOME_PASSED: LotOutcome.PASSED,
    events_pb2.LOT_OUTCOME_WITHDRAWN: LotOutcome.WITHDRAWN,
}
_LOT_OUTCOME_TO_WIRE = {value: key for key, value in _LOT_OUTCOME_FROM_WIRE.items()}
_CHANNEL_FROM_WIRE = {
    events_pb2.BID_CHANNEL_ONLINE: BidChannel.ONLINE,
    events_pb2.BID_CHANNEL_FLOOR: BidChannel.FLOOR,
    events_pb2.BID_CHANNEL_ABSENTEE: BidChannel.ABSENTEE,
    events_pb2.BID_CHANNEL_PHONE: BidChannel.PHONE,
}
_CHANNEL_TO_WIRE = {value: key for key, value in _CHANNEL_FROM_WIRE.items()}
_KIND_FROM_WIRE = {
    audience_pb2.AUCTION_EVENT_KIND_AUCTION_STARTED: EventKind.AUCTION_STARTED,
    audience_pb2.AUCTION_EVENT_KIND_AUCTION_ENDED: EventKind.AUCTION_ENDED,
    audience_pb2.AUCTION_EVENT_KIND_LOT_OPENED: EventKind.LOT_OPENED,
    audience_pb2.AUCTION_EVENT_KIND_LOT_CLOSED: EventKind.LOT_CLOSED,
    audience_pb2.AUCTION_EVENT_KIND_BID_PLACED: EventKind.BID_PLACED,
}
_RESOLUTION_TO_WIRE = {
    audience.Resolution.SAMPLES: audience_pb2.VIEWER_RESOLUTION_SAMPLES,
    audience.Resolution.MINUTES: audience_pb2.VIEWER_RESOLUTION_MINUTES,
    audience.Resolution.NONE: audience_pb2.VIEWER_RESOLUTION_NONE,
}


def event_from_wire(message: events_pb2.AuctionEvent) -> AuctionEvent | EventRejection:
    """The domain event, or a rejection when the message cannot stand for one."""
    if not message.HasField("occurred_at"):
        return EventRejection(message.event_id, "occurred_at is missing")
    occurred_at = message.occurred_at.seconds + message.occurred_at.nanos / 1e9
    kind = message.WhichOneof("kind")
    common = (message.event_id, message.auction_id, occurred_at)
    if kind == "auction_started":
        return AuctionEvent(*common, EventKind.AUCTION_STARTED)
    if kind == "auction_ended":
        return AuctionEvent(*common, EventKind.AUCTION_ENDED)
    if kind == "lot_opened":
        return AuctionEvent(
            *common, EventKind.LOT_OPENED, lot_id=message.lot_opened.lot_id, title=message.lot_opened.title
        )
    if kind == "lot_closed":
        closed = message.lot_closed
        return AuctionEvent(
            *common,
            EventKind.LOT_CLOSED,
            lot_id=closed.lot_id,
            outcome=_LOT_OUTCOME_FROM_WIRE.get(closed.outcome),
            amount=closed.hammer_price,
            currency=closed.currency,
            bidder_id=closed.winner_bidder_id,
        )
    if kind == "bid_placed":
        bid = message.bid_placed
        return AuctionEvent(
            *common,
            EventKind.BID_PLACED,
            lot_id=bid.lot_id,
            amount=bid.amount,
            currency=bid.currency,
            bidder_id=bid.bidder_id,
            channel=_CHANNEL_FROM_WIRE.get(bid.channel),
        )
    return EventRejection(message.event_id, "the event has no kind (auction_started ... bid_placed)")


def event_to_wire(event: AuctionEvent) -> events_pb2.AuctionEvent:
    message = events_pb2.AuctionEvent(
        event_id=event.event_id, auction_id=event.auction_id, occurred_at=timestamp_of(event.occurred_at)
    )
    if event.kind is EventKind.AUCTION_STARTED:
        message.auction_started.SetInParent()
    elif event.kind is EventKind.AUCTION_ENDED:
        message.auction_ended.SetInParent()
    elif event.kind is EventKind.LOT_OPENED:
        message.lot_opened.CopyFrom(events_pb2.LotOpened(lot_id=event.lot_id, title=event.title))
    elif event.kind is EventKind.LOT_CLOSED:
        message.lot_closed.CopyFrom(
            events_pb2.LotClosed(
                lot_id=event.lot_id,
                outcome=_LOT_OUTCOME_TO_WIRE[event.outcome]
                if event.outcome
                else events_pb2.LOT_OUTCOME_UNSPECIFIED,
                hammer_price=event.amount,
                currency=event.currency,
                winner_bidder_id=event.bidder_id,
            )
        )
    else:
        message.bid_placed.CopyFrom(
            events_pb2.BidPlaced(
                lot_id=event.lot_id,
                bidder_id=event.bidder_id,
                amount=event.amount,
                currency=event.currency,
                channel=_CHANNEL_TO_WIRE[event.channel]
                if event.channel
                else events_pb2.BID_CHANNEL_UNSPECIFIED,
            )
        )
    return message


def page_token_of(event: AuctionEvent) -> str:
    """An opaque token naming the page's last event: its time and id."""
    return base64.urlsafe_b64encode(f"{event.occurred_at!r}|{event.event_id}".encode()).decode()


def position_of(token: str) -> tuple[float, str] | None:
    """The ``(occurred_at, event_id)`` a token names, or None when it is not one of ours."""
    try:
        occurred_at, _, event_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        moment = float(occurred_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (moment, event_id) if math.isfinite(moment) and event_id else None


def unique_viewers_to_wire(count: UniqueViewerCount) -> audience_pb2.UniqueViewerCount:
    return audience_pb2.UniqueViewerCount(
        estimate=count.estimate,
        lower_bound=count.lower_bound,
        upper_bound=count.upper_bound,
        identified_estimate=count.identified_estimate,
        anonymous_estimate=count.anonymous_estimate,
        exact=count.exact,
        sketched_snapshots=count.sketched_snapshots,
        unsketched_snapshots=count.unsketched_snapshots,
    )


class AuctionEventServicer:
    """Records event batches: one acknowledgement per event, in order; the batch written at once."""

    def __init__(
        self,
        recorder: AuctionEventRecorder,
        log: RateLimitedLog,
        write_failed: Callable[[StorageUnavailable], None],
        metrics: IngestMetrics,
    ) -> None:
        self._recorder = recorder
        self._log = log
        self._write_failed = write_failed
        self._metrics = metrics

    async def RecordAuctionEvents(
        self, request: events_pb2.RecordAuctionEventsRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.RecordAuctionEventsResponse:
        received = request.events
        if len(received) > MAX_EVENTS_PER_BATCH:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a batch holds at most {MAX_EVENTS_PER_BATCH} events, got {len(received)}",
            )
        try:
            results = await self._recorder.record([event_from_wire(message) for message in received])
        except StorageUnavailable as error:
            self._write_failed(error)
            await abort_storage_unavailable(context, error, self._log)
        self._metrics.count_events(result.outcome.value for result in results)
        response = events_pb2.RecordAuctionEventsResponse()
        for message, result in zip(received, results, strict=True):
            response.acks.add(
                event_id=message.event_id, outcome=_OUTCOME_TO_WIRE[result.outcome], detail=result.detail
            )
        return response


class AuctionAudienceServicer:
    """Per-lot audience, bids against viewers, the funnel and unique viewers over a range."""

    def __init__(
        self,
        store: AuctionEventStore,
        snapshots: SnapshotStore,
        timing: SnapshotTiming,
        log: RateLimitedLog,
        auction_id_type: AuctionIdType = AuctionIdType.AUTO,
    ) -> None:
        self._store = store
        # Unique viewers come from the snapshot store's hourly merged sketches (bounded per range).
        self._snapshots = snapshots
        self._timing = timing
        self._log = log
        self._auction_id_type = auction_id_type

    async def _range(self, request: Any, context: grpc.aio.ServicerContext) -> AnalyticsRange:
        """The request's auction and range (every query here has ``auction_id``, ``from`` and ``to``)."""
        problem = accepted_auction_id_problem(request.auction_id, self._auction_id_type)
        if problem:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        start = _seconds(getattr(request, "from")) if request.HasField("from") else None
        end = _seconds(request.to) if request.HasField("to") else None
        if start is not None and end is not None and start >= end:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "'from' must be before 'to'")
        return AnalyticsRange(request.auction_id, start, end)  # type: ignore[arg-type]

    def _timeline_range(self, query: AnalyticsRange) -> AnalyticsRange:
        """The snapshots that can hold a moment of the range: one interval either side (whole seconds)."""
        interval = self._timing.snapshot_interval_seconds
        start = None if query.start is None else math.floor(query.start) - interval
        end = None if query.end is None else math.ceil(query.end) + interval
        return AnalyticsRange(query.auction_id, start, end)

    async def _timeline(self, query: AnalyticsRange) -> audience.ViewerTimeline:
        # Counts and samples only: the sketches (about 1 KB a minute) are not needed here.
        details = await self._store.snapshot_details(self._timeline_range(query), sketches=False)
        return audience.ViewerTimeline(
            details, self._timing.snapshot_interval_seconds, self._timing.sample_interval_seconds
        )

    async def QueryLotAudience(
        self, request: audience_pb2.QueryLotAudienceRequest, context: grpc.aio.ServicerContext
    ) -> audience_pb2.QueryLotAudienceResponse:
        query = await self._range(request, context)
        try:
            # Lots that opened from the range's start on, with their closes and bids wherever they fall
            # after it (kept by the store as the events arrived: no event is loaded here). Those
            # opened after the range are dropped only at the end: a lot without a close in the range
            # ends at the next lot's opening, which may be after it.
            facts = await self._store.lot_facts(query.auction_id, query.start)
            rows = [
                row
                for row in audience.lot_audiences(
                    facts, await self._timeline(AnalyticsRange(query.auction_id, query.start, None))
                )
                if query.end is None or row.opened_at < query.end
            ]
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        return audience_pb2.QueryLotAudienceResponse(lots=[_lot_to_wire(row) for row in rows])

    async def QueryBidsAgainstViewers(
        self, request: audience_pb2.QueryBidsAgainstViewersRequest, context: grpc.aio.ServicerContext
    ) -> audience_pb2.QueryBidsAgainstViewersResponse:
        query = await self._range(request, context)
        limit = request.limit or MAX_BIDS
        if limit > MAX_BIDS:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"limit must be at most {MAX_BIDS}")
        try:
            bids = await self._store.query_events(query, (EventKind.BID_PLACED,), limit + 1)
            rows = audience.bids_against_viewers(bids[:limit], await self._timeline(query))
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        response = audience_pb2.QueryBidsAgainstViewersResponse(truncated=len(bids) > limit)
        for row in rows:
            bid = response.bids.add(
                event_id=row.event_id,
                lot_id=row.lot_id,
                bidder_id=row.bidder_id,
                amount=row.amount,
                currency=row.currency,
                channel=_CHANNEL_TO_WIRE[row.channel] if row.channel else events_pb2.BID_CHANNEL_UNSPECIFIED,
                viewers=row.viewers,
                resolution=_RESOLUTION_TO_WIRE[row.resolution],
            )
            bid.placed_at.CopyFrom(timestamp_of(row.placed_at))
        return response

    async def QueryAuctionFunnel(
        self, request: audience_pb2.QueryAuctionFunnelRequest, context: grpc.aio.ServicerContext
    ) -> audience_pb2.QueryAuctionFunnelResponse:
        query = await self._range(request, context)
        try:
            # Counted by the store: 50,000 bids are not loaded to count their bidders.
            counts = await self._store.funnel_counts(query)
            result = audience.Funnel(
                unique_viewers=await self._snapshots.query_unique_viewers(query),
                bidders=counts.bidders,
                bids=counts.bids,
                lots_sold=counts.lots_sold,
                winners=counts.winners,
            )
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        return audience_pb2.QueryAuctionFunnelResponse(
            unique_viewers=unique_viewers_to_wire(result.unique_viewers),
            bidders=result.bidders,
            bids=result.bids,
            lots_sold=result.lots_sold,
            winners=result.winners,
        )

    async def QueryAuctionEvents(
        self, request: audience_pb2.QueryAuctionEventsRequest, context: grpc.aio.ServicerContext
    ) -> audience_pb2.QueryAuctionEventsResponse:
        query = await self._range(request, context)
        page_size = request.page_size or MAX_EVENTS_PAGE
        if page_size > MAX_EVENTS_PAGE:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be at most {MAX_EVENTS_PAGE}"
            )
        kinds = []
        for kind in request.kinds:
            if kind not in _KIND_FROM_WIRE:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown event kind {kind}")
            kinds.append(_KIND_FROM_WIRE[kind])
        after = None
        if request.page_token:
            after = position_of(request.page_token)
            if after is None:
                await abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this service gave"
                )
        try:
            events = await self._store.query_events(query, kinds, page_size + 1, after)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        page = events[:page_size]
        return audience_pb2.QueryAuctionEventsResponse(
            events=[event_to_wire(event) for event in page],
            next_page_token=page_token_of(page[-1]) if len(events) > page_size else "",
        )

    async def QueryUniqueViewers(
        self, request: audience_pb2.QueryUniqueViewersRequest, context: grpc.aio.ServicerContext
    ) -> audience_pb2.QueryUniqueViewersResponse:
        query = await self._range(request, context)
        try:
            count = await self._snapshots.query_unique_viewers(query)
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        return audience_pb2.QueryUniqueViewersResponse(unique_viewers=unique_viewers_to_wire(count))


def _lot_to_wire(row: audience.LotAudience) -> audience_pb2.LotAudience:
    # Every field in one constructor call (None leaves a message field unset): a response holds a
    # message per lot of the auction.
    return audience_pb2.LotAudience(
        lot_id=row.lot_id,
        title=row.title,
        opened_at=timestamp_of(row.opened_at),
        closed_at=None if row.closed_at is None else timestamp_of(row.closed_at),
        outcome=events_pb2.LOT_OUTCOME_UNSPECIFIED
        if row.outcome is None
        else _LOT_OUTCOME_TO_WIRE[row.outcome],
        hammer_price=row.hammer_price,
        currency=row.currency,
        winner_bidder_id=row.winner_bidder_id,
        viewers_at_open=row.viewers_at_open,
        viewers_at_close=row.viewers_at_close,
        peak_viewers=row.peak_viewers,
        avg_viewers=row.avg_viewers,
        bids=row.bids,
        bidders=row.bidders,
        resolution=_RESOLUTION_TO_WIRE[row.resolution],
    )


def _seconds(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9
