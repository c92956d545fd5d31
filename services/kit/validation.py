"""Requests checked against the contracts' field rules before any handler runs.

Every string, bytes, repeated and map field of the contracts carries a bound in
``(buf.validate.field)`` options (protovalidate, buf's standard for rules in
.proto files; a contract test checks that none lacks one). The kit's guard runs
:func:`violations` on every request, a few microseconds with protovalidate's
native engine, and refuses a request that breaks a rule with
INVALID_ARGUMENT and one field violation per broken rule, each naming its field
as a path into the request (``agent.tools[3]``, ``flag.variants["beta"]``).
Requests the transport cannot decode (too deeply nested, malformed) and strings
with U+0000 in them are refused the same way (:func:`lenient`).
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import protovalidate
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from services.kit.errors import FieldViolation, InvalidArgument

#: Violations reported per request at most; the rest are summed up in one more.
MAX_REPORTED = 20
#: Map keys are quoted in field paths up to this many characters.
MAX_KEY_IN_PATH = 40

# Built once: the validator compiles each message type's rules on first use and keeps them.
_VALIDATOR = protovalidate.Validator()


def _path(field: Any) -> str:
    parts: list[str] = []
    for element in field.elements:
        text = element.field_name
        subscript = element.subscript
        if subscript is not None:
            if subscript.field == "index":
                text += f"[{subscript.value}]"
            else:
                text += f'["{_key(subscript.value)}"]'
        parts.append(text)
    return ".".join(parts)


def violations(message: Message) -> list[FieldViolation]:
    """Returns the field violations of a request against its rules, at most :data:`MAX_REPORTED` + 1."""
    found = _VALIDATOR.collect_violations(message)
    listed = [FieldViolation(_path(v.proto.field), v.proto.message) for v in found[:MAX_REPORTED]]
    if len(found) > MAX_REPORTED:
        listed.append(FieldViolation("", f"and {len(found) - MAX_REPORTED} more violations"))
    return listed


def check(message: Message) -> None:
    """Raises InvalidArgument listing what breaks the rules, if anything does.

    Raises:
        InvalidArgument: Reason ``INVALID_ARGUMENT``, one field violation per broken rule.
    """
    found = violations(message)
    if found:
        raise InvalidArgument(found)


def _key(key: object) -> str:
    """A map key as it appears in a field path: quoted, escaped, cut to :data:`MAX_KEY_IN_PATH`."""
    text = json.dumps(str(key))[1:-1]
    return text if len(text) <= MAX_KEY_IN_PATH else text[:MAX_KEY_IN_PATH] + "…"


def _nul_json_paths(value: struct_pb2.Value, path: str) -> Iterator[str]:
    """Paths, JSON style (``targeting["if"][0]``), of the strings and keys with U+0000 in a Value."""
    kind = value.WhichOneof("kind")
    if kind == "string_value" and "\x00" in value.string_value:
        yield path
    elif kind == "struct_value":
        yield from _nul_struct_paths(value.struct_value, path)
    elif kind == "list_value":
        for index, item in enumerate(value.list_value.values):
            yield from _nul_json_paths(item, f"{path}[{index}]")


def _nul_struct_paths(struct: struct_pb2.Struct, path: str) -> Iterator[str]:
    for key, item in struct.fields.items():
        item_path = f'{path}["{_key(key)}"]'
        if "\x00" in key:
            yield item_path
        yield from _nul_json_paths(item, item_path)


def _nul_paths(message: Message, prefix: str = "") -> Iterator[str]:
    """Paths of the strings (at any depth, map keys and JSON values included) that contain U+0000."""
    for descriptor, value in message.ListFields():
        path = prefix + descriptor.name
        kind = descriptor.message_type
        if kind is not None and kind.GetOptions().map_entry:
            value_kind = kind.fields_by_name["value"]
            for key, item in value.items():
                item_path = f'{path}["{_key(key)}"]'
                if isinstance(key, str) and "\x00" in key:
                    yield item_path
                if value_kind.message_type is None:
                    if isinstance(item, str) and "\x00" in item:
                        yield item_path
                elif value_kind.message_type.full_name == "google.protobuf.Value":
                    yield from _nul_json_paths(item, item_path)
                else:
                    yield from _nul_paths(item, item_path + ".")
        elif kind is not None:
            items = value if descriptor.is_repeated else [value]
            for index, item in enumerate(items):
                item_path = f"{path}[{index}]" if descriptor.is_repeated else path
                if kind.full_name == "google.protobuf.Struct":
                    yield from _nul_struct_paths(item, item_path)
                elif kind.full_name == "google.protobuf.Value":
                    yield from _nul_json_paths(item, item_path)
                else:
                    yield from _nul_paths(item, item_path + ".")
        elif descriptor.type == descriptor.TYPE_STRING:
            items = value if descriptor.is_repeated else [value]
            for index, item in enumerate(items):
                if "\x00" in item:
                    yield f"{path}[{index}]" if descriptor.is_repeated else path


@dataclass(frozen=True, slots=True)
class _Search:
    """Where U+0000 can be in a message type: how :func:`_holds_nul` searches one.

    Attributes:
        strings: Reads the type's singular string fields at once (``operator.attrgetter``),
            as a tuple; None when it has none.
        lists: Repeated string fields.
        maps: Map fields with string keys or values that can hold strings.
        messages: Message fields (``(name, repeated)``) whose type can hold strings.
        json: Struct, Value and ListValue fields (``(name, repeated)``).
    """

    strings: Callable[[Any], tuple[str, ...]] | None
    lists: tuple[str, ...]
    maps: tuple[str, ...]
    messages: tuple[tuple[str, bool], ...]
    json: tuple[tuple[str, bool], ...]

    def __bool__(self) -> bool:
        return bool(self.strings or self.lists or self.maps or self.messages or self.json)


_JSON_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})
#: Each message type's search by full name: made on the type's first request with a zero
#: byte and kept for the process (descriptors never change while it runs, so nothing
#: invalidates them).
_SEARCHES: dict[str, _Search] = {}
#: What a type being planned reads as from inside itself (a recursive type): one to search.
#: No message is searched with it: the type's own search replaces it before it returns.
_IN_PROGRESS = _Search(None, ("",), (), (), ())


def _search_of(descriptor: Any) -> _Search:
    """Returns where a message type can hold a string, at any depth.

    Numbers, enums, bytes and messages with no string at any depth (a Timestamp) are
    left out, so the numbers of a request cost nothing.
    """
    found = _SEARCHES.get(descriptor.full_name)
    if found is not None:
        return found
    _SEARCHES[descriptor.full_name] = _IN_PROGRESS
    strings: list[str] = []
    lists: list[str] = []
    maps: list[str] = []
    messages: list[tuple[str, bool]] = []
    json_fields: list[tuple[str, bool]] = []
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None:
            if field.type == field.TYPE_STRING:
                (lists if field.is_repeated else strings).append(field.name)
        elif kind.GetOptions().map_entry:
            key, value = kind.fields_by_name["key"], kind.fields_by_name["value"]
            if key.type == key.TYPE_STRING or value.type == value.TYPE_STRING or _holds_strings(value):
                maps.append(field.name)
        elif kind.full_name in _JSON_TYPES:
            json_fields.append((field.name, field.is_repeated))
        elif _search_of(kind):
            messages.append((field.name, field.is_repeated))
    getter: Callable[[Any], tuple[str, ...]] | None = None
    if len(strings) == 1:
        name = strings[0]
        getter = lambda message: (getattr(message, name),)  # noqa: E731
    elif strings:
        getter = operator.attrgetter(*strings)
    search = _Search(getter, tuple(lists), tuple(maps), tuple(messages), tuple(json_fields))
    _SEARCHES[descriptor.full_name] = search
    return search


def _holds_strings(field: Any) -> bool:
    kind = field.message_type
    return kind is not None and (kind.full_name in _JSON_TYPES or bool(_search_of(kind)))


def _json_holds_nul(value: Any) -> bool:
    """Whether a Struct, Value or ListValue holds U+0000 in a string or a key."""
    if isinstance(value, struct_pb2.Struct):
        return any("\x00" in key or _json_holds_nul(item) for key, item in value.fields.items())
    if isinstance(value, struct_pb2.ListValue):
        return any(_json_holds_nul(item) for item in value.values)
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return "\x00" in value.string_value
    if kind == "struct_value":
        return _json_holds_nul(value.struct_value)
    return kind == "list_value" and _json_holds_nul(value.list_value)


def _value_holds_nul(value: Any) -> bool:
    """Whether a map's value (a string, a number, or a message) holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Message):
        return _json_holds_nul(value) if value.DESCRIPTOR.full_name in _JSON_TYPES else _holds_nul(value)
    return False


def _holds_nul(message: Message) -> bool:
    """Whether any string of a message, at any depth (map keys and JSON included), holds U+0000.

    The fast half of :func:`_nul_paths`: it builds no paths, reads the singular strings
    of a message at once and searches them as one string, and visits only fields that
    can hold a string (:func:`_search_of`).
    """
    search = _search_of(message.DESCRIPTOR)
    if search.strings is not None and "\x00" in "".join(search.strings(message)):
        return True
    for name in search.lists:
        if "\x00" in "".join(getattr(message, name)):
            return True
    for name in search.maps:
        for key, value in getattr(message, name).items():
            if (isinstance(key, str) and "\x00" in key) or _value_holds_nul(value):
                return True
    for checks, fields in ((_holds_nul, search.messages), (_json_holds_nul, search.json)):
        for name, repeated in fields:
            if repeated:
                if any(checks(item) for item in getattr(message, name)):
                    return True
            elif message.HasField(name) and checks(getattr(message, name)):
                return True
    return False


class Unreadable:
    """What a request decodes to when the service cannot take it as it is.

    Either its bytes are no valid message of its type (malformed, nested too
    deeply), or a string in it contains U+0000, which PostgreSQL cannot store
    in text and no Orchestrall field means.
    """

    __slots__ = ("_error",)

    def __init__(self, error: InvalidArgument) -> None:
        self._error = error

    def error(self) -> InvalidArgument:
        """Returns the error to answer with (no parser internals in it)."""
        return self._error


def lenient(deserialize: Callable[[bytes], Any], type_name: str) -> Callable[[bytes], Any]:
    """Returns a request deserializer that yields :class:`Unreadable` where the request is unusable.

    gRPC answers a failing deserializer with a bare INTERNAL before any handler
    runs; the guard turns :class:`Unreadable` into INVALID_ARGUMENT instead. A
    request is searched for U+0000 only when its bytes hold a zero byte at all
    (one ``memchr``; a point read such as GetAgent has none), first without building
    paths (:func:`_holds_nul`: numbers, such as a usage event's quantity, hold zero
    bytes too), and for the paths of the violations only when it finds one.
    """
    malformed = Unreadable(
        InvalidArgument(
            [FieldViolation("", f"is not a valid {type_name}: malformed, or nested too deeply")],
            reason="MALFORMED_REQUEST",
        )
    )

    def parse(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception:  # DecodeError and what upb raises on depth limits
            return malformed
        if b"\x00" in data and _holds_nul(message):
            paths = list(itertools.islice(_nul_paths(message), MAX_REPORTED))
            if paths:
                return Unreadable(
                    InvalidArgument(
                        [FieldViolation(path, "must not contain NUL characters (U+0000)") for path in paths]
                    )
                )
        return message

    return parse
