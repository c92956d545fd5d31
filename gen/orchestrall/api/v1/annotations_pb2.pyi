from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor

class MethodAccess(_message.Message):
    __slots__ = ("anonymous", "permission")
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    anonymous: bool
    permission: str
    def __init__(self, anonymous: _Optional[bool] = ..., permission: _Optional[str] = ...) -> None: ...
