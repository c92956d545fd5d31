import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import client_pb2 as _client_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from orchestrall.api.v1 import annotations_pb2 as _annotations_pb2_1
from orchestrall.billing.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestUsageEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.UsageEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_resources_pb2.UsageEvent, _Mapping]]] = ...) -> None: ...

class IngestCloudEventsRequest(_message.Message):
    __slots__ = ("parent", "body")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, parent: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class IngestUsageEventsResponse(_message.Message):
    __slots__ = ("accepted_count", "duplicate_count")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    duplicate_count: int
    def __init__(self, accepted_count: _Optional[int] = ..., duplicate_count: _Optional[int] = ...) -> None: ...

class GetUsageSummaryRequest(_message.Message):
    __slots__ = ("name", "period_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERIOD_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    period_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., period_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CheckEntitlementRequest(_message.Message):
    __slots__ = ("tenant", "meter", "quantity", "quantities")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    meter: str
    quantity: float
    quantities: _containers.RepeatedCompositeFieldContainer[MeterQuantity]
    def __init__(self, tenant: _Optional[str] = ..., meter: _Optional[str] = ..., quantity: _Optional[float] = ..., quantities: _Optional[_Iterable[_Union[MeterQuantity, _Mapping]]] = ...) -> None: ...

class MeterQuantity(_message.Message):
    __slots__ = ("meter", "quantity")
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    meter: str
    quantity: float
    def __init__(self, meter: _Optional[str] = ..., quantity: _Optional[float] = ...) -> None: ...

class CheckEntitlementResponse(_message.Message):
    __slots__ = ("allowed", "remaining", "limit", "meters")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    remaining: float
    limit: float
    meters: _containers.RepeatedCompositeFieldContainer[MeterEntitlement]
    def __init__(self, allowed: _Optional[bool] = ..., remaining: _Optional[float] = ..., limit: _Optional[float] = ..., meters: _Optional[_Iterable[_Union[MeterEntitlement, _Mapping]]] = ...) -> None: ...

class MeterEntitlement(_message.Message):
    __slots__ = ("meter", "allowed", "remaining", "limit")
    METER_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    allowed: bool
    remaining: float
    limit: float
    def __init__(self, meter: _Optional[str] = ..., allowed: _Optional[bool] = ..., remaining: _Optional[float] = ..., limit: _Optional[float] = ...) -> None: ...

class CreateReservationRequest(_message.Message):
    __slots__ = ("parent", "reservation", "reservation_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    reservation: _resources_pb2.Reservation
    reservation_id: str
    def __init__(self, parent: _Optional[str] = ..., reservation: _Optional[_Union[_resources_pb2.Reservation, _Mapping]] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class SettleReservationRequest(_message.Message):
    __slots__ = ("name", "quantities", "usage_events")
    class QuantitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    USAGE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    quantities: _containers.ScalarMap[str, float]
    usage_events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.UsageEvent]
    def __init__(self, name: _Optional[str] = ..., quantities: _Optional[_Mapping[str, float]] = ..., usage_events: _Optional[_Iterable[_Union[_resources_pb2.UsageEvent, _Mapping]]] = ...) -> None: ...

class ReleaseReservationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateMeterRequest(_message.Message):
    __slots__ = ("parent", "meter", "meter_id", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    meter: _resources_pb2.Meter
    meter_id: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., meter: _Optional[_Union[_resources_pb2.Meter, _Mapping]] = ..., meter_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetMeterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListMetersRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMetersResponse(_message.Message):
    __slots__ = ("meters", "next_page_token")
    METERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    meters: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Meter]
    next_page_token: str
    def __init__(self, meters: _Optional[_Iterable[_Union[_resources_pb2.Meter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateMeterRequest(_message.Message):
    __slots__ = ("meter", "update_mask")
    METER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    meter: _resources_pb2.Meter
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, meter: _Optional[_Union[_resources_pb2.Meter, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteMeterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("name", "start_time", "end_time", "window_size", "time_zone", "group_by", "subjects", "filter_group_by")
    class WindowSize(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WINDOW_SIZE_UNSPECIFIED: _ClassVar[QueryUsageRequest.WindowSize]
        WINDOW_SIZE_MINUTE: _ClassVar[QueryUsageRequest.WindowSize]
        WINDOW_SIZE_HOUR: _ClassVar[QueryUsageRequest.WindowSize]
        WINDOW_SIZE_DAY: _ClassVar[QueryUsageRequest.WindowSize]
        WINDOW_SIZE_MONTH: _ClassVar[QueryUsageRequest.WindowSize]
    WINDOW_SIZE_UNSPECIFIED: QueryUsageRequest.WindowSize
    WINDOW_SIZE_MINUTE: QueryUsageRequest.WindowSize
    WINDOW_SIZE_HOUR: QueryUsageRequest.WindowSize
    WINDOW_SIZE_DAY: QueryUsageRequest.WindowSize
    WINDOW_SIZE_MONTH: QueryUsageRequest.WindowSize
    class FilterGroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    FILTER_GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    window_size: QueryUsageRequest.WindowSize
    time_zone: str
    group_by: _containers.RepeatedScalarFieldContainer[str]
    subjects: _containers.RepeatedScalarFieldContainer[str]
    filter_group_by: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_size: _Optional[_Union[QueryUsageRequest.WindowSize, str]] = ..., time_zone: _Optional[str] = ..., group_by: _Optional[_Iterable[str]] = ..., subjects: _Optional[_Iterable[str]] = ..., filter_group_by: _Optional[_Mapping[str, str]] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("windows",)
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    windows: _containers.RepeatedCompositeFieldContainer[_resources_pb2.UsageWindow]
    def __init__(self, windows: _Optional[_Iterable[_Union[_resources_pb2.UsageWindow, _Mapping]]] = ...) -> None: ...

class CreateUsageAlertRequest(_message.Message):
    __slots__ = ("parent", "usage_alert", "usage_alert_id", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    USAGE_ALERT_FIELD_NUMBER: _ClassVar[int]
    USAGE_ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    usage_alert: _resources_pb2.UsageAlert
    usage_alert_id: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., usage_alert: _Optional[_Union[_resources_pb2.UsageAlert, _Mapping]] = ..., usage_alert_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetUsageAlertRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListUsageAlertsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUsageAlertsResponse(_message.Message):
    __slots__ = ("usage_alerts", "next_page_token")
    USAGE_ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    usage_alerts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.UsageAlert]
    next_page_token: str
    def __init__(self, usage_alerts: _Optional[_Iterable[_Union[_resources_pb2.UsageAlert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteUsageAlertRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListUsageAlertEventsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUsageAlertEventsResponse(_message.Message):
    __slots__ = ("usage_alert_events", "next_page_token")
    USAGE_ALERT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    usage_alert_events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.UsageAlertEvent]
    next_page_token: str
    def __init__(self, usage_alert_events: _Optional[_Iterable[_Union[_resources_pb2.UsageAlertEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "show_archived")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SHOW_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    show_archived: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., show_archived: _Optional[bool] = ...) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans", "next_page_token")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Plan]
    next_page_token: str
    def __init__(self, plans: _Optional[_Iterable[_Union[_resources_pb2.Plan, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreatePlanRequest(_message.Message):
    __slots__ = ("plan", "plan_id", "request_id")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    plan: _resources_pb2.Plan
    plan_id: str
    request_id: str
    def __init__(self, plan: _Optional[_Union[_resources_pb2.Plan, _Mapping]] = ..., plan_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdatePlanRequest(_message.Message):
    __slots__ = ("plan", "update_mask")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    plan: _resources_pb2.Plan
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, plan: _Optional[_Union[_resources_pb2.Plan, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ArchivePlanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription", "update_mask")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    subscription: _resources_pb2.Subscription
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, subscription: _Optional[_Union[_resources_pb2.Subscription, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class PreviewInvoiceRequest(_message.Message):
    __slots__ = ("parent",)
    PARENT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    def __init__(self, parent: _Optional[str] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[_resources_pb2.Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInvoicePdfRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ExportInvoicesRequest(_message.Message):
    __slots__ = ("parent",)
    PARENT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    def __init__(self, parent: _Optional[str] = ...) -> None: ...

class FinalizeInvoiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MarkInvoicePaidRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class VoidInvoiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
