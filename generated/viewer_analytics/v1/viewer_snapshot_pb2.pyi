import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ViewerSnapshot(_message.Message):
    __slots__ = ("auction_id", "minute_start", "viewer_count", "avg_viewers", "peak_viewers", "min_viewers", "sample_count", "unique_viewers", "partial", "gateway_id", "samples", "identified_viewer_sketch", "anonymous_viewer_sketch")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_START_FIELD_NUMBER: _ClassVar[int]
    VIEWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    AVG_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    PEAK_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    MIN_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_VIEWER_SKETCH_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_VIEWER_SKETCH_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    minute_start: _timestamp_pb2.Timestamp
    viewer_count: int
    avg_viewers: float
    peak_viewers: int
    min_viewers: int
    sample_count: int
    unique_viewers: int
    partial: bool
    gateway_id: str
    samples: _containers.RepeatedScalarFieldContainer[int]
    identified_viewer_sketch: bytes
    anonymous_viewer_sketch: bytes
    def __init__(self, auction_id: _Optional[str] = ..., minute_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., viewer_count: _Optional[int] = ..., avg_viewers: _Optional[float] = ..., peak_viewers: _Optional[int] = ..., min_viewers: _Optional[int] = ..., sample_count: _Optional[int] = ..., unique_viewers: _Optional[int] = ..., partial: _Optional[bool] = ..., gateway_id: _Optional[str] = ..., samples: _Optional[_Iterable[int]] = ..., identified_viewer_sketch: _Optional[bytes] = ..., anonymous_viewer_sketch: _Optional[bytes] = ...) -> None: ...
