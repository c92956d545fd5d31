import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Flag(_message.Message):
    __slots__ = ("name", "state", "variants", "default_variant", "targeting", "description", "create_time", "update_time", "revision_id", "flag_set")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Flag.State]
        STATE_ENABLED: _ClassVar[Flag.State]
        STATE_DISABLED: _ClassVar[Flag.State]
    STATE_UNSPECIFIED: Flag.State
    STATE_ENABLED: Flag.State
    STATE_DISABLED: Flag.State
    class VariantsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    TARGETING_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    FLAG_SET_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: Flag.State
    variants: _containers.MessageMap[str, _struct_pb2.Value]
    default_variant: str
    targeting: _struct_pb2.Struct
    description: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    revision_id: str
    flag_set: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[Flag.State, str]] = ..., variants: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., default_variant: _Optional[str] = ..., targeting: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision_id: _Optional[str] = ..., flag_set: _Optional[str] = ...) -> None: ...

class FlagRevision(_message.Message):
    __slots__ = ("name", "action", "flag", "diff", "principal", "create_time", "rollback_revision")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[FlagRevision.Action]
        ACTION_CREATE: _ClassVar[FlagRevision.Action]
        ACTION_UPDATE: _ClassVar[FlagRevision.Action]
        ACTION_DELETE: _ClassVar[FlagRevision.Action]
        ACTION_ROLLBACK: _ClassVar[FlagRevision.Action]
        ACTION_IMPORT: _ClassVar[FlagRevision.Action]
    ACTION_UNSPECIFIED: FlagRevision.Action
    ACTION_CREATE: FlagRevision.Action
    ACTION_UPDATE: FlagRevision.Action
    ACTION_DELETE: FlagRevision.Action
    ACTION_ROLLBACK: FlagRevision.Action
    ACTION_IMPORT: FlagRevision.Action
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: FlagRevision.Action
    flag: Flag
    diff: _containers.RepeatedCompositeFieldContainer[JsonPatchOperation]
    principal: str
    create_time: _timestamp_pb2.Timestamp
    rollback_revision: str
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[FlagRevision.Action, str]] = ..., flag: _Optional[_Union[Flag, _Mapping]] = ..., diff: _Optional[_Iterable[_Union[JsonPatchOperation, _Mapping]]] = ..., principal: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rollback_revision: _Optional[str] = ...) -> None: ...

class JsonPatchOperation(_message.Message):
    __slots__ = ("op", "path", "value")
    OP_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    op: str
    path: str
    value: _struct_pb2.Value
    def __init__(self, op: _Optional[str] = ..., path: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class FlagUsage(_message.Message):
    __slots__ = ("name", "last_evaluate_time", "start_time", "end_time", "counts", "totals")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_EVALUATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    name: str
    last_evaluate_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    counts: _containers.RepeatedCompositeFieldContainer[EvaluationCount]
    totals: _containers.RepeatedCompositeFieldContainer[EvaluationCount]
    def __init__(self, name: _Optional[str] = ..., last_evaluate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counts: _Optional[_Iterable[_Union[EvaluationCount, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[EvaluationCount, _Mapping]]] = ...) -> None: ...

class EvaluationCount(_message.Message):
    __slots__ = ("start_time", "variant", "reason", "count")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    variant: str
    reason: str
    count: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., variant: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...
