import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchViewerCountsRequest(_message.Message):
    __slots__ = ("auction_ids",)
    AUCTION_IDS_FIELD_NUMBER: _ClassVar[int]
    auction_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, auction_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchViewerCountsResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[ViewerCountUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[ViewerCountUpdate, _Mapping]]] = ...) -> None: ...

class ViewerCountUpdate(_message.Message):
    __slots__ = ("auction_id", "viewer_count", "unique_viewers", "at")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    viewer_count: int
    unique_viewers: int
    at: _timestamp_pb2.Timestamp
    def __init__(self, auction_id: _Optional[str] = ..., viewer_count: _Optional[int] = ..., unique_viewers: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
