import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from viewer_analytics.v1 import auction_audience_service_pb2 as _auction_audience_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryViewerAnalyticsRequest(_message.Message):
    __slots__ = ("auction_id", "to", "bucket_seconds", "include_unique_viewers", "include_point_unique_viewers")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_POINT_UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    to: _timestamp_pb2.Timestamp
    bucket_seconds: int
    include_unique_viewers: bool
    include_point_unique_viewers: bool
    def __init__(self, auction_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket_seconds: _Optional[int] = ..., include_unique_viewers: _Optional[bool] = ..., include_point_unique_viewers: _Optional[bool] = ..., **kwargs) -> None: ...

class ViewerAnalyticsPoint(_message.Message):
    __slots__ = ("bucket_start", "avg_viewers", "peak_viewers", "min_viewers", "viewer_count", "sample_count", "unique_viewers")
    BUCKET_START_FIELD_NUMBER: _ClassVar[int]
    AVG_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    PEAK_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    MIN_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    bucket_start: _timestamp_pb2.Timestamp
    avg_viewers: float
    peak_viewers: int
    min_viewers: int
    viewer_count: int
    sample_count: int
    unique_viewers: _auction_audience_service_pb2.UniqueViewerCount
    def __init__(self, bucket_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., avg_viewers: _Optional[float] = ..., peak_viewers: _Optional[int] = ..., min_viewers: _Optional[int] = ..., viewer_count: _Optional[int] = ..., sample_count: _Optional[int] = ..., unique_viewers: _Optional[_Union[_auction_audience_service_pb2.UniqueViewerCount, _Mapping]] = ...) -> None: ...

class ViewerAnalyticsSummary(_message.Message):
    __slots__ = ("overall_peak", "overall_avg", "duration_minutes", "first_at", "last_at", "snapshot_count", "unique_viewers")
    OVERALL_PEAK_FIELD_NUMBER: _ClassVar[int]
    OVERALL_AVG_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    FIRST_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_AT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    overall_peak: int
    overall_avg: float
    duration_minutes: float
    first_at: _timestamp_pb2.Timestamp
    last_at: _timestamp_pb2.Timestamp
    snapshot_count: int
    unique_viewers: _auction_audience_service_pb2.UniqueViewerCount
    def __init__(self, overall_peak: _Optional[int] = ..., overall_avg: _Optional[float] = ..., duration_minutes: _Optional[float] = ..., first_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., snapshot_count: _Optional[int] = ..., unique_viewers: _Optional[_Union[_auction_audience_service_pb2.UniqueViewerCount, _Mapping]] = ...) -> None: ...

class QueryViewerAnalyticsResponse(_message.Message):
    __slots__ = ("points", "summary")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[ViewerAnalyticsPoint]
    summary: ViewerAnalyticsSummary
    def __init__(self, points: _Optional[_Iterable[_Union[ViewerAnalyticsPoint, _Mapping]]] = ..., summary: _Optional[_Union[ViewerAnalyticsSummary, _Mapping]] = ...) -> None: ...
