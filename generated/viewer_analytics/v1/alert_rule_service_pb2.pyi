import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_ABOVE: _ClassVar[AlertKind]
    ALERT_KIND_BELOW: _ClassVar[AlertKind]
    ALERT_KIND_DROP_PERCENT: _ClassVar[AlertKind]
    ALERT_KIND_ZERO_WHILE_LIVE: _ClassVar[AlertKind]

class AlertMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_METRIC_UNSPECIFIED: _ClassVar[AlertMetric]
    ALERT_METRIC_CONNECTIONS: _ClassVar[AlertMetric]
    ALERT_METRIC_UNIQUE_VIEWERS: _ClassVar[AlertMetric]

class AlertDeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_DELIVERY_STATUS_UNSPECIFIED: _ClassVar[AlertDeliveryStatus]
    ALERT_DELIVERY_STATUS_PENDING: _ClassVar[AlertDeliveryStatus]
    ALERT_DELIVERY_STATUS_DELIVERED: _ClassVar[AlertDeliveryStatus]
    ALERT_DELIVERY_STATUS_FAILED: _ClassVar[AlertDeliveryStatus]

class AlertArmedState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_ARMED_STATE_UNSPECIFIED: _ClassVar[AlertArmedState]
    ALERT_ARMED_STATE_ARMED: _ClassVar[AlertArmedState]
    ALERT_ARMED_STATE_DISARMED: _ClassVar[AlertArmedState]
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_ABOVE: AlertKind
ALERT_KIND_BELOW: AlertKind
ALERT_KIND_DROP_PERCENT: AlertKind
ALERT_KIND_ZERO_WHILE_LIVE: AlertKind
ALERT_METRIC_UNSPECIFIED: AlertMetric
ALERT_METRIC_CONNECTIONS: AlertMetric
ALERT_METRIC_UNIQUE_VIEWERS: AlertMetric
ALERT_DELIVERY_STATUS_UNSPECIFIED: AlertDeliveryStatus
ALERT_DELIVERY_STATUS_PENDING: AlertDeliveryStatus
ALERT_DELIVERY_STATUS_DELIVERED: AlertDeliveryStatus
ALERT_DELIVERY_STATUS_FAILED: AlertDeliveryStatus
ALERT_ARMED_STATE_UNSPECIFIED: AlertArmedState
ALERT_ARMED_STATE_ARMED: AlertArmedState
ALERT_ARMED_STATE_DISARMED: AlertArmedState

class AlertRuleSpec(_message.Message):
    __slots__ = ("kind", "metric", "threshold", "window_seconds", "hysteresis", "cooldown_seconds", "webhook_url", "paused")
    KIND_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HYSTERESIS_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    kind: AlertKind
    metric: AlertMetric
    threshold: int
    window_seconds: int
    hysteresis: int
    cooldown_seconds: int
    webhook_url: str
    paused: bool
    def __init__(self, kind: _Optional[_Union[AlertKind, str]] = ..., metric: _Optional[_Union[AlertMetric, str]] = ..., threshold: _Optional[int] = ..., window_seconds: _Optional[int] = ..., hysteresis: _Optional[int] = ..., cooldown_seconds: _Optional[int] = ..., webhook_url: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class AlertRule(_message.Message):
    __slots__ = ("rule_id", "auction_id", "spec", "created_at", "updated_at", "armed_state")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ARMED_STATE_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    auction_id: str
    spec: AlertRuleSpec
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    armed_state: AlertArmedState
    def __init__(self, rule_id: _Optional[str] = ..., auction_id: _Optional[str] = ..., spec: _Optional[_Union[AlertRuleSpec, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., armed_state: _Optional[_Union[AlertArmedState, str]] = ...) -> None: ...

class AlertDelivery(_message.Message):
    __slots__ = ("delivery_id", "rule_id", "auction_id", "event_type", "status", "attempts", "last_error", "last_status_code", "created_at", "last_attempt_at", "next_attempt_at", "delivered_at", "payload")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    rule_id: str
    auction_id: str
    event_type: str
    status: AlertDeliveryStatus
    attempts: int
    last_error: str
    last_status_code: int
    created_at: _timestamp_pb2.Timestamp
    last_attempt_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    payload: str
    def __init__(self, delivery_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., auction_id: _Optional[str] = ..., event_type: _Optional[str] = ..., status: _Optional[_Union[AlertDeliveryStatus, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., last_status_code: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[str] = ...) -> None: ...

class CreateAlertRuleRequest(_message.Message):
    __slots__ = ("auction_id", "spec")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    spec: AlertRuleSpec
    def __init__(self, auction_id: _Optional[str] = ..., spec: _Optional[_Union[AlertRuleSpec, _Mapping]] = ...) -> None: ...

class CreateAlertRuleResponse(_message.Message):
    __slots__ = ("rule", "secret")
    RULE_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    secret: str
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListAlertRulesRequest(_message.Message):
    __slots__ = ("auction_id",)
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    def __init__(self, auction_id: _Optional[str] = ...) -> None: ...

class ListAlertRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ...) -> None: ...

class UpdateAlertRuleRequest(_message.Message):
    __slots__ = ("auction_id", "rule_id", "spec")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    spec: AlertRuleSpec
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., spec: _Optional[_Union[AlertRuleSpec, _Mapping]] = ...) -> None: ...

class UpdateAlertRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class SetAlertRulePausedRequest(_message.Message):
    __slots__ = ("auction_id", "rule_id", "paused")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    paused: bool
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class SetAlertRulePausedResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class DeleteAlertRuleRequest(_message.Message):
    __slots__ = ("auction_id", "rule_id")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class DeleteAlertRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SendTestAlertDeliveryRequest(_message.Message):
    __slots__ = ("auction_id", "rule_id")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class SendTestAlertDeliveryResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: AlertDelivery
    def __init__(self, delivery: _Optional[_Union[AlertDelivery, _Mapping]] = ...) -> None: ...

class ListAlertDeliveriesRequest(_message.Message):
    __slots__ = ("auction_id", "rule_id", "page_size", "page_token")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    page_size: int
    page_token: str
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAlertDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[AlertDelivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[AlertDelivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListActiveAlertRulesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "changes_since")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANGES_SINCE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    changes_since: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., changes_since: _Optional[str] = ...) -> None: ...

class ListActiveAlertRulesResponse(_message.Message):
    __slots__ = ("rules", "next_page_token", "changes_cursor", "removed_rule_ids")
    RULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANGES_CURSOR_FIELD_NUMBER: _ClassVar[int]
    REMOVED_RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    next_page_token: str
    changes_cursor: str
    removed_rule_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., changes_cursor: _Optional[str] = ..., removed_rule_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RecordAlertFiringRequest(_message.Message):
    __slots__ = ("auction_id", "rule_id", "firing_id", "fired_at", "value", "reference_value", "require_armed")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRING_ID_FIELD_NUMBER: _ClassVar[int]
    FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ARMED_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    firing_id: str
    fired_at: _timestamp_pb2.Timestamp
    value: int
    reference_value: int
    require_armed: bool
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., firing_id: _Optional[str] = ..., fired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[int] = ..., reference_value: _Optional[int] = ..., require_armed: _Optional[bool] = ...) -> None: ...

class RecordAlertFiringResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: AlertDelivery
    def __init__(self, delivery: _Optional[_Union[AlertDelivery, _Mapping]] = ...) -> None: ...

class AlertArmedReport(_message.Message):
    __slots__ = ("auction_id", "rule_id", "armed", "rule_updated_at")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ARMED_FIELD_NUMBER: _ClassVar[int]
    RULE_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    auction_id: str
    rule_id: str
    armed: bool
    rule_updated_at: _timestamp_pb2.Timestamp
    def __init__(self, auction_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., armed: _Optional[bool] = ..., rule_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordAlertArmedRequest(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[AlertArmedReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[AlertArmedReport, _Mapping]]] = ...) -> None: ...

class RecordAlertArmedResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...
