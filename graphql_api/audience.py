"""The ingest service's auction-audience queries as this API sees them: lots, bids and the funnel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_audience_service_pb2_grpc as audience_grpc
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2

from graphql_api.analytics import TimeWindow, UniqueViewers
from graphql_api.ingest import IngestClient
from graphql_api.ingest import unique_viewers_from_wire as _unique

LOT_OUTCOMES = {
    events_pb2.LOT_OUTCOME_SOLD: "SOLD",
    events_pb2.LOT_OUTCOME_PASSED: "PASSED",
    events_pb2.LOT_OUTCOME_WITHDRAWN: "WITHDRAWN",
}
BID_CHANNELS = {
    events_pb2.BID_CHANNEL_ONLINE: "ONLINE",
    events_pb2.BID_CHANNEL_FLOOR: "FLOOR",
    events_pb2.BID_CHANNEL_ABSENTEE: "ABSENTEE",
    events_pb2.BID_CHANNEL_PHONE: "PHONE",
}
RESOLUTIONS = {
    audience_pb2.VIEWER_RESOLUTION_SAMPLES: "SAMPLES",
    audience_pb2.VIEWER_RESOLUTION_MINUTES: "MINUTES",
    audience_pb2.VIEWER_RESOLUTION_NONE: "NONE",
}


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    title: str
    opened_at: datetime
    closed_at: datetime | None
    outcome: str | None
    hammer_price: int | None
    currency: str | None
    winner_bidder_id: str | None
    viewers_at_open: int
    viewers_at_close: int
    peak_viewers: int
    avg_viewers: float
    bids: int
    bidders: int
    resolution: str


@dataclass(frozen=True, slots=True)
class Bid:
    lot_id: str
    bidder_id: str
    placed_at: datetime
    amount: int
    currency: str
    channel: str | None
    viewers: int
    resolution: str


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    kind: str
    occurred_at: datetime
    lot_id: str | None
    title: str | None
    outcome: str | None
    amount: int | None
    currency: str | None
    bidder_id: str | None
    channel: str | None


EVENT_KINDS = {
    "AUCTION_STARTED": audience_pb2.AUCTION_EVENT_KIND_AUCTION_STARTED,
    "AUCTION_ENDED": audience_pb2.AUCTION_EVENT_KIND_AUCTION_ENDED,
    "LOT_OPENED": audience_pb2.AUCTION_EVENT_KIND_LOT_OPENED,
    "LOT_CLOSED": audience_pb2.AUCTION_EVENT_KIND_LOT_CLOSED,
    "BID_PLACED": audience_pb2.AUCTION_EVENT_KIND_BID_PLACED,
}


def _event(message: events_pb2.AuctionEvent) -> Event:
    kind = message.WhichOneof("kind") or ""
    closed, placed = message.lot_closed, message.bid_placed
    sold = kind == "lot_closed" and closed.outcome == events_pb2.LOT_OUTCOME_SOLD
    lot_id = {
        "lot_opened": message.lot_opened.lot_id,
        "lot_closed": closed.lot_id,
        "bid_placed": placed.lot_id,
    }
    return Event(
        event_id=message.event_id,
        kind=kind.upper(),
        occurred_at=_time(message.occurred_at),
        lot_id=lot_id.get(kind),
        title=message.lot_opened.title if kind == "lot_opened" else None,
        outcome=LOT_OUTCOMES.get(closed.outcome) if kind == "lot_closed" else None,
        amount=placed.amount if kind == "bid_placed" else closed.hammer_price if sold else None,
        currency=placed.currency if kind == "bid_placed" else closed.currency if sold else None,
        bidder_id=placed.bidder_id if kind == "bid_placed" else closed.winner_bidder_id if sold else None,
        channel=BID_CHANNELS.get(placed.channel) if kind == "bid_placed" else None,
    )


@dataclass(frozen=True, slots=True)
class Funnel:
    unique_viewers: UniqueViewers
    bidders: int
    bids: int
    lots_sold: int
    winners: int


def _time(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)


def _with_window(request: Any, window: TimeWindow) -> Any:
    if window.start is not None:
        # The field is named `from`, a Python keyword, so it is reached by name.
        getattr(request, "from").CopyFrom(Timestamp(seconds=window.start))
    if window.end is not None:
        request.to.CopyFrom(Timestamp(seconds=window.end))
    return request


class AudienceQueries:
    """The auction-audience calls, made through the API's ingest client (its key, deadline, metrics)."""

    def __init__(self, ingest: IngestClient) -> None:
        self._ingest = ingest
        self._stub = audience_grpc.AuctionAudienceServiceStub(ingest.channel)

    async def lots(self, auction_id: str, window: TimeWindow) -> list[Lot]:
        request = _with_window(audience_pb2.QueryLotAudienceRequest(auction_id=auction_id), window)
        response = await self._ingest.call("QueryLotAudience", self._stub.QueryLotAudience, request)
        lots = []
        for lot in response.lots:
            sold = lot.outcome == events_pb2.LOT_OUTCOME_SOLD
            lots.append(
                Lot(
                    lot_id=lot.lot_id,
                    title=lot.title,
                    opened_at=_time(lot.opened_at),
                    closed_at=_time(lot.closed_at) if lot.HasField("closed_at") else None,
                    outcome=LOT_OUTCOMES.get(lot.outcome),
                    hammer_price=lot.hammer_price if sold else None,
                    currency=lot.currency if sold else None,
                    winner_bidder_id=lot.winner_bidder_id if sold else None,
                    viewers_at_open=lot.viewers_at_open,
                    viewers_at_close=lot.viewers_at_close,
                    peak_viewers=lot.peak_viewers,
                    avg_viewers=lot.avg_viewers,
                    bids=lot.bids,
                    bidders=lot.bidders,
                    resolution=RESOLUTIONS.get(lot.resolution, "NONE"),
                )
            )
        return lots

    async def bids(self, auction_id: str, window: TimeWindow, limit: int) -> tuple[list[Bid], bool]:
        request = _with_window(
            audience_pb2.QueryBidsAgainstViewersRequest(auction_id=auction_id, limit=limit), window
        )
        response = await self._ingest.call(
            "QueryBidsAgainstViewers", self._stub.QueryBidsAgainstViewers, request
        )
        bids = [
            Bid(
                lot_id=bid.lot_id,
                bidder_id=bid.bidder_id,
                placed_at=_time(bid.placed_at),
                amount=bid.amount,
                currency=bid.currency,
                channel=BID_CHANNELS.get(bid.channel),
                viewers=bid.viewers,
                resolution=RESOLUTIONS.get(bid.resolution, "NONE"),
            )
            for bid in response.bids
        ]
        return bids, response.truncated

    async def events(
        self, auction_id: str, window: TimeWindow, kinds: list[str], first: int, after: str
    ) -> tuple[list[Event], str]:
        """A page of the auction's events and the cursor of the next one (empty on the last page)."""
        request = _with_window(
            audience_pb2.QueryAuctionEventsRequest(
                auction_id=auction_id,
                kinds=[EVENT_KINDS[kind] for kind in kinds],
                page_size=first,
                page_token=after,
            ),
            window,
        )
        response = await self._ingest.call("QueryAuctionEvents", self._stub.QueryAuctionEvents, request)
        return [_event(message) for message in response.events], response.next_page_token

    async def funnel(self, auction_id: str, window: TimeWindow) -> Funnel:
        request = _with_window(audience_pb2.QueryAuctionFunnelRequest(auction_id=auction_id), window)
        response = await self._ingest.call("QueryAuctionFunnel", self._stub.QueryAuctionFunnel, request)
        return Funnel(
            unique_viewers=_unique(response.unique_viewers),
            bidders=response.bidders,
            bids=response.bids,
            lots_sold=response.lots_sold,
            winners=response.winners,
        )
