import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LotOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOT_OUTCOME_UNSPECIFIED: _ClassVar[LotOutcome]
    LOT_OUTCOME_SOLD: _ClassVar[LotOutcome]
    LOT_OUTCOME_PASSED: _ClassVar[LotOutcome]
    LOT_OUTCOME_WITHDRAWN: _ClassVar[LotOutcome]

class BidChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BID_CHANNEL_UNSPECIFIED: _ClassVar[BidChannel]
    BID_CHANNEL_ONLINE: _ClassVar[BidChannel]
    BID_CHANNEL_FLOOR: _ClassVar[BidChannel]
    BID_CHANNEL_ABSENTEE: _ClassVar[BidChannel]
    BID_CHANNEL_PHONE: _ClassVar[BidChannel]

class AuctionEventOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUCTION_EVENT_OUTCOME_UNSPECIFIED: _ClassVar[AuctionEventOutcome]
    AUCTION_EVENT_OUTCOME_STORED: _ClassVar[AuctionEventOutcome]
    AUCTION_EVENT_OUTCOME_DUPLICATE: _ClassVar[AuctionEventOutcome]
    AUCTION_EVENT_OUTCOME_SKIPPED_ANALYTICS_DISABLED: _ClassVar[AuctionEventOutcome]
    AUCTION_EVENT_OUTCOME_REJECTED: _ClassVar[AuctionEventOutcome]
LOT_OUTCOME_UNSPECIFIED: LotOutcome
LOT_OUTCOME_SOLD: LotOutcome
LOT_OUTCOME_PASSED: LotOutcome
LOT_OUTCOME_WITHDRAWN: LotOutcome
BID_CHANNEL_UNSPECIFIED: BidChannel
BID_CHANNEL_ONLINE: BidChannel
BID_CHANNEL_FLOOR: BidChannel
BID_CHANNEL_ABSENTEE: BidChannel
BID_CHANNEL_PHONE: BidChannel
AUCTION_EVENT_OUTCOME_UNSPECIFIED: AuctionEventOutcome
AUCTION_EVENT_OUTCOME_STORED: AuctionEventOutcome
AUCTION_EVENT_OUTCOME_DUPLICATE: AuctionEventOutcome
AUCTION_EVENT_OUTCOME_SKIPPED_ANALYTICS_DISABLED: AuctionEventOutcome
AUCTION_EVENT_OUTCOME_REJECTED: AuctionEventOutcome

class RecordAuctionEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuctionEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuctionEvent, _Mapping]]] = ...) -> None: ...

class RecordAuctionEventsResponse(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[AuctionEventAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[AuctionEventAck, _Mapping]]] = ...) -> None: ...

class AuctionEvent(_message.Message):
    __slots__ = ("event_id", "auction_id", "occurred_at", "auction_started", "auction_ended", "lot_opened", "lot_closed", "bid_placed")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    AUCTION_STARTED_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ENDED_FIELD_NUMBER: _ClassVar[int]
    LOT_OPENED_FIELD_NUMBER: _ClassVar[int]
    LOT_CLOSED_FIELD_NUMBER: _ClassVar[int]
    BID_PLACED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    auction_id: str
    occurred_at: _timestamp_pb2.Timestamp
    auction_started: AuctionStarted
    auction_ended: AuctionEnded
    lot_opened: LotOpened
    lot_closed: LotClosed
    bid_placed: BidPlaced
    def __init__(self, event_id: _Optional[str] = ..., auction_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., auction_started: _Optional[_Union[AuctionStarted, _Mapping]] = ..., auction_ended: _Optional[_Union[AuctionEnded, _Mapping]] = ..., lot_opened: _Optional[_Union[LotOpened, _Mapping]] = ..., lot_closed: _Optional[_Union[LotClosed, _Mapping]] = ..., bid_placed: _Optional[_Union[BidPlaced, _Mapping]] = ...) -> None: ...

class AuctionStarted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuctionEnded(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LotOpened(_message.Message):
    __slots__ = ("lot_id", "title")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    title: str
    def __init__(self, lot_id: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class LotClosed(_message.Message):
    __slots__ = ("lot_id", "outcome", "hammer_price", "currency", "winner_bidder_id")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HAMMER_PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    WINNER_BIDDER_ID_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    outcome: LotOutcome
    hammer_price: int
    currency: str
    winner_bidder_id: str
    def __init__(self, lot_id: _Optional[str] = ..., outcome: _Optional[_Union[LotOutcome, str]] = ..., hammer_price: _Optional[int] = ..., currency: _Optional[str] = ..., winner_bidder_id: _Optional[str] = ...) -> None: ...

class BidPlaced(_message.Message):
    __slots__ = ("lot_id", "bidder_id", "amount", "currency", "channel")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    BIDDER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    bidder_id: str
    amount: int
    currency: str
    channel: BidChannel
    def __init__(self, lot_id: _Optional[str] = ..., bidder_id: _Optional[str] = ..., amount: _Optional[int] = ..., currency: _Optional[str] = ..., channel: _Optional[_Union[BidChannel, str]] = ...) -> None: ...

class AuctionEventAck(_message.Message):
    __slots__ = ("event_id", "outcome", "detail")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    outcome: AuctionEventOutcome
    detail: str
    def __init__(self, event_id: _Optional[str] = ..., outcome: _Optional[_Union[AuctionEventOutcome, str]] = ..., detail: _Optional[str] = ...) -> None: ...
