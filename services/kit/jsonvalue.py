"""``google.protobuf.Struct`` / ``Value`` to and from plain JSON values, fast.

``json_format.MessageToDict`` and ``ParseDict`` handle any message through
reflection; these handle only the JSON well-known types, directly, which on a
hot path (a flag evaluation's context and value) is several times cheaper.
Protobuf keeps every JSON number as a double; numbers with an integral value
come back as ``int``, because JSON does not tell 3 from 3.0 and JsonLogic
operators do (flagd's ``fractional`` takes integer weights only).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

JsonValue = Any  # None, bool, int, float, str, list of JsonValue, dict of str to JsonValue


def from_value(value: struct_pb2.Value) -> JsonValue:
    """Returns the JSON value of a ``google.protobuf.Value`` (an unset value is null)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct) -> dict[str, JsonValue]:
    """Returns the JSON object of a ``google.protobuf.Struct``."""
    return {key: from_value(item) for key, item in struct.fields.items()}


def to_value(value: JsonValue) -> struct_pb2.Value:
    """Returns a ``google.protobuf.Value`` for a JSON value (None becomes ``null_value``).

    Raises:
        TypeError: ``value`` is not made of JSON types.
    """
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return struct_pb2.Value(number_value=value)
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    message = struct_pb2.Value()
    if isinstance(value, dict):
        message.struct_value.update(value)
    elif isinstance(value, list | tuple):
        message.list_value.extend(value)
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")
    return message
