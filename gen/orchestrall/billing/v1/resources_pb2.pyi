import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageEvent(_message.Message):
    __slots__ = ("id", "source", "tenant", "meter", "quantity", "subject", "time", "spec_version", "type", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    tenant: str
    meter: str
    quantity: float
    subject: str
    time: _timestamp_pb2.Timestamp
    spec_version: str
    type: str
    data: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., tenant: _Optional[str] = ..., meter: _Optional[str] = ..., quantity: _Optional[float] = ..., subject: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., spec_version: _Optional[str] = ..., type: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class MeterUsage(_message.Message):
    __slots__ = ("meter", "unit", "quantity", "event_count", "limit")
    METER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    unit: str
    quantity: float
    event_count: int
    limit: float
    def __init__(self, meter: _Optional[str] = ..., unit: _Optional[str] = ..., quantity: _Optional[float] = ..., event_count: _Optional[int] = ..., limit: _Optional[float] = ...) -> None: ...

class UsageSummary(_message.Message):
    __slots__ = ("name", "plan", "start_time", "end_time", "meters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    plan: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    meters: _containers.RepeatedCompositeFieldContainer[MeterUsage]
    def __init__(self, name: _Optional[str] = ..., plan: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., meters: _Optional[_Iterable[_Union[MeterUsage, _Mapping]]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("name", "quantities", "state", "ttl", "expire_time", "subject", "settled_quantities", "create_time", "end_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Reservation.State]
        STATE_ACTIVE: _ClassVar[Reservation.State]
        STATE_SETTLED: _ClassVar[Reservation.State]
        STATE_RELEASED: _ClassVar[Reservation.State]
        STATE_EXPIRED: _ClassVar[Reservation.State]
    STATE_UNSPECIFIED: Reservation.State
    STATE_ACTIVE: Reservation.State
    STATE_SETTLED: Reservation.State
    STATE_RELEASED: Reservation.State
    STATE_EXPIRED: Reservation.State
    class QuantitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SettledQuantitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    quantities: _containers.ScalarMap[str, float]
    state: Reservation.State
    ttl: _duration_pb2.Duration
    expire_time: _timestamp_pb2.Timestamp
    subject: str
    settled_quantities: _containers.ScalarMap[str, float]
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., quantities: _Optional[_Mapping[str, float]] = ..., state: _Optional[_Union[Reservation.State, str]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., settled_quantities: _Optional[_Mapping[str, float]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Meter(_message.Message):
    __slots__ = ("name", "display_name", "description", "event_type", "aggregation", "value_property", "group_by", "late_event_grace", "unit", "built_in", "create_time", "update_time")
    class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AGGREGATION_UNSPECIFIED: _ClassVar[Meter.Aggregation]
        AGGREGATION_SUM: _ClassVar[Meter.Aggregation]
        AGGREGATION_COUNT: _ClassVar[Meter.Aggregation]
        AGGREGATION_UNIQUE_COUNT: _ClassVar[Meter.Aggregation]
        AGGREGATION_MAX: _ClassVar[Meter.Aggregation]
        AGGREGATION_LATEST: _ClassVar[Meter.Aggregation]
    AGGREGATION_UNSPECIFIED: Meter.Aggregation
    AGGREGATION_SUM: Meter.Aggregation
    AGGREGATION_COUNT: Meter.Aggregation
    AGGREGATION_UNIQUE_COUNT: Meter.Aggregation
    AGGREGATION_MAX: Meter.Aggregation
    AGGREGATION_LATEST: Meter.Aggregation
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    VALUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    LATE_EVENT_GRACE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    BUILT_IN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    event_type: str
    aggregation: Meter.Aggregation
    value_property: str
    group_by: _containers.ScalarMap[str, str]
    late_event_grace: _duration_pb2.Duration
    unit: str
    built_in: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., event_type: _Optional[str] = ..., aggregation: _Optional[_Union[Meter.Aggregation, str]] = ..., value_property: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ..., late_event_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., unit: _Optional[str] = ..., built_in: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageWindow(_message.Message):
    __slots__ = ("start_time", "end_time", "value", "subject", "group_by")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    value: float
    subject: str
    group_by: _containers.ScalarMap[str, str]
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., subject: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UsageAlert(_message.Message):
    __slots__ = ("name", "display_name", "meter", "thresholds", "create_time")
    class Threshold(_message.Message):
        __slots__ = ("type", "value")
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            TYPE_UNSPECIFIED: _ClassVar[UsageAlert.Threshold.Type]
            TYPE_PERCENT: _ClassVar[UsageAlert.Threshold.Type]
            TYPE_QUANTITY: _ClassVar[UsageAlert.Threshold.Type]
        TYPE_UNSPECIFIED: UsageAlert.Threshold.Type
        TYPE_PERCENT: UsageAlert.Threshold.Type
        TYPE_QUANTITY: UsageAlert.Threshold.Type
        TYPE_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        type: UsageAlert.Threshold.Type
        value: float
        def __init__(self, type: _Optional[_Union[UsageAlert.Threshold.Type, str]] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    meter: str
    thresholds: _containers.RepeatedCompositeFieldContainer[UsageAlert.Threshold]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., meter: _Optional[str] = ..., thresholds: _Optional[_Iterable[_Union[UsageAlert.Threshold, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageAlertEvent(_message.Message):
    __slots__ = ("name", "threshold", "meter", "period_start_time", "period_end_time", "quantity", "threshold_quantity", "limit", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    threshold: UsageAlert.Threshold
    meter: str
    period_start_time: _timestamp_pb2.Timestamp
    period_end_time: _timestamp_pb2.Timestamp
    quantity: float
    threshold_quantity: float
    limit: float
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., threshold: _Optional[_Union[UsageAlert.Threshold, _Mapping]] = ..., meter: _Optional[str] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quantity: _Optional[float] = ..., threshold_quantity: _Optional[float] = ..., limit: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
