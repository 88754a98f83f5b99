import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuctionSettings(_message.Message):
    __slots__ = ("auction_id", "enable_viewer_analytics", "updated_at")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLE_VIEWER_ANALYTICS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    enable_viewer_analytics: bool
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, auction_id: _Optional[str] = ..., enable_viewer_analytics: _Optional[bool] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAuctionSettingsRequest(_message.Message):
    __slots__ = ("auction_id",)
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    def __init__(self, auction_id: _Optional[str] = ...) -> None: ...

class GetAuctionSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: AuctionSettings
    def __init__(self, settings: _Optional[_Union[AuctionSettings, _Mapping]] = ...) -> None: ...

class SetViewerAnalyticsRequest(_message.Message):
    __slots__ = ("auction_id", "enabled")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    enabled: bool
    def __init__(self, auction_id: _Optional[str] = ..., enabled: _Optional[bool] = ...) -> None: ...

class SetViewerAnalyticsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: AuctionSettings
    def __init__(self, settings: _Optional[_Union[AuctionSettings, _Mapping]] = ...) -> None: ...
