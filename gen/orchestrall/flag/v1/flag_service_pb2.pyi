import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import client_pb2 as _client_pb2
from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from orchestrall.api.v1 import annotations_pb2 as _annotations_pb2_1
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from orchestrall.flag.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateFlagRequest(_message.Message):
    __slots__ = ("parent", "flag", "flag_id", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    flag: _resources_pb2.Flag
    flag_id: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., flag: _Optional[_Union[_resources_pb2.Flag, _Mapping]] = ..., flag_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetFlagRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListFlagsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFlagsResponse(_message.Message):
    __slots__ = ("flags", "next_page_token")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Flag]
    next_page_token: str
    def __init__(self, flags: _Optional[_Iterable[_Union[_resources_pb2.Flag, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateFlagRequest(_message.Message):
    __slots__ = ("flag", "update_mask")
    FLAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    flag: _resources_pb2.Flag
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, flag: _Optional[_Union[_resources_pb2.Flag, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteFlagRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListFlagRevisionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFlagRevisionsResponse(_message.Message):
    __slots__ = ("flag_revisions", "next_page_token")
    FLAG_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    flag_revisions: _containers.RepeatedCompositeFieldContainer[_resources_pb2.FlagRevision]
    next_page_token: str
    def __init__(self, flag_revisions: _Optional[_Iterable[_Union[_resources_pb2.FlagRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetFlagRevisionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RollbackFlagRequest(_message.Message):
    __slots__ = ("name", "revision_id", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision_id: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., revision_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ImportFlagsRequest(_message.Message):
    __slots__ = ("parent", "body", "delete_missing", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    DELETE_MISSING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    body: _httpbody_pb2.HttpBody
    delete_missing: bool
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ..., delete_missing: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class ImportFlagsResponse(_message.Message):
    __slots__ = ("created_flags", "updated_flags", "deleted_flags")
    CREATED_FLAGS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FLAGS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FLAGS_FIELD_NUMBER: _ClassVar[int]
    created_flags: _containers.RepeatedScalarFieldContainer[str]
    updated_flags: _containers.RepeatedScalarFieldContainer[str]
    deleted_flags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, created_flags: _Optional[_Iterable[str]] = ..., updated_flags: _Optional[_Iterable[str]] = ..., deleted_flags: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportFlagsRequest(_message.Message):
    __slots__ = ("parent", "flag_set")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    FLAG_SET_FIELD_NUMBER: _ClassVar[int]
    parent: str
    flag_set: str
    def __init__(self, parent: _Optional[str] = ..., flag_set: _Optional[str] = ...) -> None: ...

class GetFlagUsageRequest(_message.Message):
    __slots__ = ("name", "start_time", "end_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportStaleFlagsRequest(_message.Message):
    __slots__ = ("parent", "days")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    days: int
    def __init__(self, parent: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class ReportStaleFlagsResponse(_message.Message):
    __slots__ = ("stale_flags",)
    STALE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    stale_flags: _containers.RepeatedCompositeFieldContainer[StaleFlag]
    def __init__(self, stale_flags: _Optional[_Iterable[_Union[StaleFlag, _Mapping]]] = ...) -> None: ...

class StaleFlag(_message.Message):
    __slots__ = ("flag", "reason", "last_evaluate_time", "variant", "evaluation_count")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[StaleFlag.Reason]
        REASON_NOT_EVALUATED: _ClassVar[StaleFlag.Reason]
        REASON_ONE_VARIANT: _ClassVar[StaleFlag.Reason]
    REASON_UNSPECIFIED: StaleFlag.Reason
    REASON_NOT_EVALUATED: StaleFlag.Reason
    REASON_ONE_VARIANT: StaleFlag.Reason
    FLAG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_EVALUATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    flag: str
    reason: StaleFlag.Reason
    last_evaluate_time: _timestamp_pb2.Timestamp
    variant: str
    evaluation_count: int
    def __init__(self, flag: _Optional[str] = ..., reason: _Optional[_Union[StaleFlag.Reason, str]] = ..., last_evaluate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., variant: _Optional[str] = ..., evaluation_count: _Optional[int] = ...) -> None: ...

class EvaluateFlagRequest(_message.Message):
    __slots__ = ("name", "context")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    context: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EvaluateFlagResponse(_message.Message):
    __slots__ = ("value", "variant", "reason", "error_code")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    value: _struct_pb2.Value
    variant: str
    reason: str
    error_code: str
    def __init__(self, value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., variant: _Optional[str] = ..., reason: _Optional[str] = ..., error_code: _Optional[str] = ...) -> None: ...

class EvaluateOfrepFlagRequest(_message.Message):
    __slots__ = ("key", "body")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    key: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, key: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class EvaluateOfrepFlagsRequest(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...
