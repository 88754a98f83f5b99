import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from viewer_analytics.v1 import viewer_snapshot_pb2 as _viewer_snapshot_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SnapshotOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_OUTCOME_UNSPECIFIED: _ClassVar[SnapshotOutcome]
    SNAPSHOT_OUTCOME_STORED: _ClassVar[SnapshotOutcome]
    SNAPSHOT_OUTCOME_DUPLICATE: _ClassVar[SnapshotOutcome]
    SNAPSHOT_OUTCOME_SKIPPED_ANALYTICS_DISABLED: _ClassVar[SnapshotOutcome]
    SNAPSHOT_OUTCOME_REJECTED: _ClassVar[SnapshotOutcome]
SNAPSHOT_OUTCOME_UNSPECIFIED: SnapshotOutcome
SNAPSHOT_OUTCOME_STORED: SnapshotOutcome
SNAPSHOT_OUTCOME_DUPLICATE: SnapshotOutcome
SNAPSHOT_OUTCOME_SKIPPED_ANALYTICS_DISABLED: SnapshotOutcome
SNAPSHOT_OUTCOME_REJECTED: SnapshotOutcome

class StreamSnapshotsRequest(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[_viewer_snapshot_pb2.ViewerSnapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[_viewer_snapshot_pb2.ViewerSnapshot, _Mapping]]] = ...) -> None: ...

class StreamSnapshotsResponse(_message.Message):
    __slots__ = ("acks", "snapshot_interval_seconds")
    ACKS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[SnapshotAck]
    snapshot_interval_seconds: int
    def __init__(self, acks: _Optional[_Iterable[_Union[SnapshotAck, _Mapping]]] = ..., snapshot_interval_seconds: _Optional[int] = ...) -> None: ...

class SnapshotAck(_message.Message):
    __slots__ = ("auction_id", "minute_start", "outcome", "detail")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_START_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    minute_start: _timestamp_pb2.Timestamp
    outcome: SnapshotOutcome
    detail: str
    def __init__(self, auction_id: _Optional[str] = ..., minute_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[SnapshotOutcome, str]] = ..., detail: _Optional[str] = ...) -> None: ...
