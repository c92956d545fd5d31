"""Domain states as ``StrEnum`` members, mapped to their proto enums in one place each.

Stores keep states as the member's string (``RUNNING``); the wire carries the
proto enum number (``STATE_RUNNING``). An :class:`EnumMap` pairs the two by
name once, at import, and refuses a domain member the contract lacks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

E = TypeVar("E", bound=StrEnum)


class EnumMap(Generic[E]):
    """The mapping between a domain ``StrEnum`` and a proto enum whose values are ``<prefix><MEMBER>``.

    Args:
        domain: The domain enum, e.g. ``RunState``.
        proto: The generated enum wrapper, e.g. ``resources_pb2.Run.State``.
        prefix: The proto values' prefix, e.g. ``STATE_``.

    Raises:
        ValueError: A domain member has no proto value.
    """

    def __init__(self, domain: type[E], proto: Any, prefix: str) -> None:
        self._to_proto: dict[E, int] = {}
        for member in domain:
            try:
                self._to_proto[member] = proto.Value(f"{prefix}{member.value}")
            except ValueError:
                raise ValueError(f"{proto.DESCRIPTOR.full_name} has no {prefix}{member.value}") from None
        self._from_proto = {number: member for member, number in self._to_proto.items()}

    def to_proto(self, member: E | str) -> int:
        """Returns the proto enum number of a domain member (or its stored string)."""
        return self._to_proto[member]  # type: ignore[index]

    def from_proto(self, number: int) -> E | None:
        """Returns the domain member of a proto number; None for UNSPECIFIED and unknown numbers."""
        return self._from_proto.get(number)
