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
    __slots__ = ("name", "display_name", "meter", "thresholds", "create_time", "notification_channels")
    class Threshold(_message.Message):
        __slots__ = ("type", "value")
        class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            TYPE_UNSPECIFIED: _ClassVar[UsageAlert.Threshold.Type]
            TYPE_PERCENT: _ClassVar[UsageAlert.Threshold.Type]
            TYPE_QUANTITY: _ClassVar[UsageAlert.Threshold.Type]
            TYPE_SOFT_LIMIT_PERCENT: _ClassVar[UsageAlert.Threshold.Type]
        TYPE_UNSPECIFIED: UsageAlert.Threshold.Type
        TYPE_PERCENT: UsageAlert.Threshold.Type
        TYPE_QUANTITY: UsageAlert.Threshold.Type
        TYPE_SOFT_LIMIT_PERCENT: UsageAlert.Threshold.Type
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
    NOTIFICATION_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    meter: str
    thresholds: _containers.RepeatedCompositeFieldContainer[UsageAlert.Threshold]
    create_time: _timestamp_pb2.Timestamp
    notification_channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., meter: _Optional[str] = ..., thresholds: _Optional[_Iterable[_Union[UsageAlert.Threshold, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., notification_channels: _Optional[_Iterable[str]] = ...) -> None: ...

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

class Plan(_message.Message):
    __slots__ = ("name", "display_name", "description", "currency_code", "fixed_fee", "charges", "request_rate", "default", "trial_days", "state", "create_time", "update_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Plan.State]
        STATE_ACTIVE: _ClassVar[Plan.State]
        STATE_ARCHIVED: _ClassVar[Plan.State]
    STATE_UNSPECIFIED: Plan.State
    STATE_ACTIVE: Plan.State
    STATE_ARCHIVED: Plan.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    FIXED_FEE_FIELD_NUMBER: _ClassVar[int]
    CHARGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RATE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    TRIAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    currency_code: str
    fixed_fee: int
    charges: _containers.RepeatedCompositeFieldContainer[Charge]
    request_rate: float
    default: bool
    trial_days: int
    state: Plan.State
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., currency_code: _Optional[str] = ..., fixed_fee: _Optional[int] = ..., charges: _Optional[_Iterable[_Union[Charge, _Mapping]]] = ..., request_rate: _Optional[float] = ..., default: _Optional[bool] = ..., trial_days: _Optional[int] = ..., state: _Optional[_Union[Plan.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Charge(_message.Message):
    __slots__ = ("meter", "model", "unit_amount", "package_size", "tiers", "included_quantity", "hard_limit", "soft_limit")
    class Model(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODEL_UNSPECIFIED: _ClassVar[Charge.Model]
        MODEL_PER_UNIT: _ClassVar[Charge.Model]
        MODEL_GRADUATED: _ClassVar[Charge.Model]
        MODEL_VOLUME: _ClassVar[Charge.Model]
        MODEL_PACKAGE: _ClassVar[Charge.Model]
    MODEL_UNSPECIFIED: Charge.Model
    MODEL_PER_UNIT: Charge.Model
    MODEL_GRADUATED: Charge.Model
    MODEL_VOLUME: Charge.Model
    MODEL_PACKAGE: Charge.Model
    METER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UNIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    HARD_LIMIT_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    model: Charge.Model
    unit_amount: str
    package_size: int
    tiers: _containers.RepeatedCompositeFieldContainer[PriceTier]
    included_quantity: float
    hard_limit: float
    soft_limit: float
    def __init__(self, meter: _Optional[str] = ..., model: _Optional[_Union[Charge.Model, str]] = ..., unit_amount: _Optional[str] = ..., package_size: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[PriceTier, _Mapping]]] = ..., included_quantity: _Optional[float] = ..., hard_limit: _Optional[float] = ..., soft_limit: _Optional[float] = ...) -> None: ...

class PriceTier(_message.Message):
    __slots__ = ("up_to", "unit_amount", "flat_amount")
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    UNIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FLAT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    up_to: float
    unit_amount: str
    flat_amount: str
    def __init__(self, up_to: _Optional[float] = ..., unit_amount: _Optional[str] = ..., flat_amount: _Optional[str] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("name", "plan", "state", "trial_end_time", "current_period_start_time", "current_period_end_time", "cancel_at_period_end", "cancel_time", "update_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Subscription.State]
        STATE_TRIALING: _ClassVar[Subscription.State]
        STATE_ACTIVE: _ClassVar[Subscription.State]
        STATE_CANCELED: _ClassVar[Subscription.State]
    STATE_UNSPECIFIED: Subscription.State
    STATE_TRIALING: Subscription.State
    STATE_ACTIVE: Subscription.State
    STATE_CANCELED: Subscription.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_END_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_AT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    plan: str
    state: Subscription.State
    trial_end_time: _timestamp_pb2.Timestamp
    current_period_start_time: _timestamp_pb2.Timestamp
    current_period_end_time: _timestamp_pb2.Timestamp
    cancel_at_period_end: bool
    cancel_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., plan: _Optional[str] = ..., state: _Optional[_Union[Subscription.State, str]] = ..., trial_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_period_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_at_period_end: _Optional[bool] = ..., cancel_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("name", "number", "state", "currency_code", "period_start_time", "period_end_time", "plan", "lines", "subtotal", "total", "create_time", "finalize_time", "paid_time", "void_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Invoice.State]
        STATE_DRAFT: _ClassVar[Invoice.State]
        STATE_OPEN: _ClassVar[Invoice.State]
        STATE_PAID: _ClassVar[Invoice.State]
        STATE_VOID: _ClassVar[Invoice.State]
    STATE_UNSPECIFIED: Invoice.State
    STATE_DRAFT: Invoice.State
    STATE_OPEN: Invoice.State
    STATE_PAID: Invoice.State
    STATE_VOID: Invoice.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINALIZE_TIME_FIELD_NUMBER: _ClassVar[int]
    PAID_TIME_FIELD_NUMBER: _ClassVar[int]
    VOID_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    number: str
    state: Invoice.State
    currency_code: str
    period_start_time: _timestamp_pb2.Timestamp
    period_end_time: _timestamp_pb2.Timestamp
    plan: str
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    subtotal: int
    total: int
    create_time: _timestamp_pb2.Timestamp
    finalize_time: _timestamp_pb2.Timestamp
    paid_time: _timestamp_pb2.Timestamp
    void_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., number: _Optional[str] = ..., state: _Optional[_Union[Invoice.State, str]] = ..., currency_code: _Optional[str] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., subtotal: _Optional[int] = ..., total: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finalize_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., void_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("kind", "description", "plan", "meter", "quantity", "included_quantity", "tiers", "amount")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[InvoiceLine.Kind]
        KIND_FIXED_FEE: _ClassVar[InvoiceLine.Kind]
        KIND_PRORATION: _ClassVar[InvoiceLine.Kind]
        KIND_USAGE: _ClassVar[InvoiceLine.Kind]
    KIND_UNSPECIFIED: InvoiceLine.Kind
    KIND_FIXED_FEE: InvoiceLine.Kind
    KIND_PRORATION: InvoiceLine.Kind
    KIND_USAGE: InvoiceLine.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    kind: InvoiceLine.Kind
    description: str
    plan: str
    meter: str
    quantity: float
    included_quantity: float
    tiers: _containers.RepeatedCompositeFieldContainer[InvoiceLineTier]
    amount: int
    def __init__(self, kind: _Optional[_Union[InvoiceLine.Kind, str]] = ..., description: _Optional[str] = ..., plan: _Optional[str] = ..., meter: _Optional[str] = ..., quantity: _Optional[float] = ..., included_quantity: _Optional[float] = ..., tiers: _Optional[_Iterable[_Union[InvoiceLineTier, _Mapping]]] = ..., amount: _Optional[int] = ...) -> None: ...

class InvoiceLineTier(_message.Message):
    __slots__ = ("tier", "quantity", "amount")
    TIER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    tier: int
    quantity: float
    amount: str
    def __init__(self, tier: _Optional[int] = ..., quantity: _Optional[float] = ..., amount: _Optional[str] = ...) -> None: ...
