import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from viewer_analytics.v1 import auction_event_service_pb2 as _auction_event_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuctionEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUCTION_EVENT_KIND_UNSPECIFIED: _ClassVar[AuctionEventKind]
    AUCTION_EVENT_KIND_AUCTION_STARTED: _ClassVar[AuctionEventKind]
    AUCTION_EVENT_KIND_AUCTION_ENDED: _ClassVar[AuctionEventKind]
    AUCTION_EVENT_KIND_LOT_OPENED: _ClassVar[AuctionEventKind]
    AUCTION_EVENT_KIND_LOT_CLOSED: _ClassVar[AuctionEventKind]
    AUCTION_EVENT_KIND_BID_PLACED: _ClassVar[AuctionEventKind]

class ViewerResolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIEWER_RESOLUTION_UNSPECIFIED: _ClassVar[ViewerResolution]
    VIEWER_RESOLUTION_SAMPLES: _ClassVar[ViewerResolution]
    VIEWER_RESOLUTION_MINUTES: _ClassVar[ViewerResolution]
    VIEWER_RESOLUTION_NONE: _ClassVar[ViewerResolution]
AUCTION_EVENT_KIND_UNSPECIFIED: AuctionEventKind
AUCTION_EVENT_KIND_AUCTION_STARTED: AuctionEventKind
AUCTION_EVENT_KIND_AUCTION_ENDED: AuctionEventKind
AUCTION_EVENT_KIND_LOT_OPENED: AuctionEventKind
AUCTION_EVENT_KIND_LOT_CLOSED: AuctionEventKind
AUCTION_EVENT_KIND_BID_PLACED: AuctionEventKind
VIEWER_RESOLUTION_UNSPECIFIED: ViewerResolution
VIEWER_RESOLUTION_SAMPLES: ViewerResolution
VIEWER_RESOLUTION_MINUTES: ViewerResolution
VIEWER_RESOLUTION_NONE: ViewerResolution

class QueryAuctionEventsRequest(_message.Message):
    __slots__ = ("auction_id", "to", "kinds", "page_size", "page_token")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    to: _timestamp_pb2.Timestamp
    kinds: _containers.RepeatedScalarFieldContainer[AuctionEventKind]
    page_size: int
    page_token: str
    def __init__(self, auction_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kinds: _Optional[_Iterable[_Union[AuctionEventKind, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., **kwargs) -> None: ...

class QueryAuctionEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_auction_event_service_pb2.AuctionEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_auction_event_service_pb2.AuctionEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QueryLotAudienceRequest(_message.Message):
    __slots__ = ("auction_id", "to")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    to: _timestamp_pb2.Timestamp
    def __init__(self, auction_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class LotAudience(_message.Message):
    __slots__ = ("lot_id", "title", "opened_at", "closed_at", "outcome", "hammer_price", "currency", "winner_bidder_id", "viewers_at_open", "viewers_at_close", "peak_viewers", "avg_viewers", "bids", "bidders", "resolution")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HAMMER_PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    WINNER_BIDDER_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_AT_OPEN_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_AT_CLOSE_FIELD_NUMBER: _ClassVar[int]
    PEAK_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    AVG_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    BIDDERS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    title: str
    opened_at: _timestamp_pb2.Timestamp
    closed_at: _timestamp_pb2.Timestamp
    outcome: _auction_event_service_pb2.LotOutcome
    hammer_price: int
    currency: str
    winner_bidder_id: str
    viewers_at_open: int
    viewers_at_close: int
    peak_viewers: int
    avg_viewers: float
    bids: int
    bidders: int
    resolution: ViewerResolution
    def __init__(self, lot_id: _Optional[str] = ..., title: _Optional[str] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[_auction_event_service_pb2.LotOutcome, str]] = ..., hammer_price: _Optional[int] = ..., currency: _Optional[str] = ..., winner_bidder_id: _Optional[str] = ..., viewers_at_open: _Optional[int] = ..., viewers_at_close: _Optional[int] = ..., peak_viewers: _Optional[int] = ..., avg_viewers: _Optional[float] = ..., bids: _Optional[int] = ..., bidders: _Optional[int] = ..., resolution: _Optional[_Union[ViewerResolution, str]] = ...) -> None: ...

class QueryLotAudienceResponse(_message.Message):
    __slots__ = ("lots",)
    LOTS_FIELD_NUMBER: _ClassVar[int]
    lots: _containers.RepeatedCompositeFieldContainer[LotAudience]
    def __init__(self, lots: _Optional[_Iterable[_Union[LotAudience, _Mapping]]] = ...) -> None: ...

class QueryBidsAgainstViewersRequest(_message.Message):
    __slots__ = ("auction_id", "to", "limit")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    to: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, auction_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., **kwargs) -> None: ...

class BidAgainstViewers(_message.Message):
    __slots__ = ("event_id", "lot_id", "bidder_id", "placed_at", "amount", "currency", "channel", "viewers", "resolution")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIDDER_ID_FIELD_NUMBER: _ClassVar[int]
    PLACED_AT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    lot_id: str
    bidder_id: str
    placed_at: _timestamp_pb2.Timestamp
    amount: int
    currency: str
    channel: _auction_event_service_pb2.BidChannel
    viewers: int
    resolution: ViewerResolution
    def __init__(self, event_id: _Optional[str] = ..., lot_id: _Optional[str] = ..., bidder_id: _Optional[str] = ..., placed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amount: _Optional[int] = ..., currency: _Optional[str] = ..., channel: _Optional[_Union[_auction_event_service_pb2.BidChannel, str]] = ..., viewers: _Optional[int] = ..., resolution: _Optional[_Union[ViewerResolution, str]] = ...) -> None: ...

class QueryBidsAgainstViewersResponse(_message.Message):
    __slots__ = ("bids", "truncated")
    BIDS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    bids: _containers.RepeatedCompositeFieldContainer[BidAgainstViewers]
    truncated: bool
    def __init__(self, bids: _Optional[_Iterable[_Union[BidAgainstViewers, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class QueryAuctionFunnelRequest(_message.Message):
    __slots__ = ("auction_id", "to")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    to: _timestamp_pb2.Timestamp
    def __init__(self, auction_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class QueryAuctionFunnelResponse(_message.Message):
    __slots__ = ("unique_viewers", "bidders", "bids", "lots_sold", "winners")
    UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    BIDDERS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    LOTS_SOLD_FIELD_NUMBER: _ClassVar[int]
    WINNERS_FIELD_NUMBER: _ClassVar[int]
    unique_viewers: UniqueViewerCount
    bidders: int
    bids: int
    lots_sold: int
    winners: int
    def __init__(self, unique_viewers: _Optional[_Union[UniqueViewerCount, _Mapping]] = ..., bidders: _Optional[int] = ..., bids: _Optional[int] = ..., lots_sold: _Optional[int] = ..., winners: _Optional[int] = ...) -> None: ...

class QueryUniqueViewersRequest(_message.Message):
    __slots__ = ("auction_id", "to")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    to: _timestamp_pb2.Timestamp
    def __init__(self, auction_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class UniqueViewerCount(_message.Message):
    __slots__ = ("estimate", "lower_bound", "upper_bound", "identified_estimate", "anonymous_estimate", "exact", "sketched_snapshots", "unsketched_snapshots")
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    UPPER_BOUND_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    SKETCHED_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    UNSKETCHED_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    estimate: float
    lower_bound: float
    upper_bound: float
    identified_estimate: float
    anonymous_estimate: float
    exact: bool
    sketched_snapshots: int
    unsketched_snapshots: int
    def __init__(self, estimate: _Optional[float] = ..., lower_bound: _Optional[float] = ..., upper_bound: _Optional[float] = ..., identified_estimate: _Optional[float] = ..., anonymous_estimate: _Optional[float] = ..., exact: _Optional[bool] = ..., sketched_snapshots: _Optional[int] = ..., unsketched_snapshots: _Optional[int] = ...) -> None: ...

class QueryUniqueViewersResponse(_message.Message):
    __slots__ = ("unique_viewers",)
    UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    unique_viewers: UniqueViewerCount
    def __init__(self, unique_viewers: _Optional[_Union[UniqueViewerCount, _Mapping]] = ...) -> None: ...
