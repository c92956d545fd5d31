"""Resource names and IDs (AIP-122).

Names are ``collection/id`` pairs, e.g. ``tenants/acme/agents/planner``. Their
formats are written once, in the contracts: :meth:`ResourceName.of` reads a
resource message's ``google.api.resource`` pattern. IDs follow RFC 1123 labels:
lowercase letters, digits and hyphens, starting with a letter, at most 63
characters.
"""

from __future__ import annotations

import re
import uuid

from google.api import resource_pb2
from google.protobuf.message import Message

from orchestrall.auth.v1 import resources_pb2 as auth_resources
from services.kit.errors import invalid

_ID = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$")
_VARIABLE = re.compile(r"^\{([a-z_]+)\}$")


def validate_id(value: str, field: str, *, minimum: int = 1) -> str:
    """Checks a user-chosen resource ID.

    Returns:
        ``value``.

    Raises:
        InvalidArgument: Not an RFC 1123 label of at least ``minimum`` characters.
    """
    if len(value) < minimum or not _ID.match(value):
        raise invalid(
            field,
            f"must be {minimum}-63 lowercase letters, digits or hyphens, start with a letter "
            "and not end with a hyphen (AIP-122)",
        )
    return value


def new_id() -> str:
    """Returns a system-generated ID (UUID4, as AIP-122 allows)."""
    return str(uuid.uuid4())


class ResourceName:
    """One resource name pattern, such as ``tenants/{tenant}/agents/{agent}``.

    Args:
        pattern: Literal collection segments and ``{variable}`` segments (AIP-123).

    Raises:
        ValueError: The pattern is empty or a segment is neither kind.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._segments = pattern.split("/")
        self._variables = [i for i, s in enumerate(self._segments) if _VARIABLE.match(s)]
        if not pattern or any("{" in s and not _VARIABLE.match(s) for s in self._segments):
            raise ValueError(f"not a resource name pattern: {pattern!r}")
        self._template = "/".join("{}" if _VARIABLE.match(s) else s for s in self._segments)
        # The whole shape as one expression, compiled once: a name is checked and split in one match
        # (a third of the time the segment-by-segment check took per call). The pattern never changes.
        self._shape = re.compile(
            "/".join("([^/]+)" if _VARIABLE.match(s) else re.escape(s) for s in self._segments)
        )

    @classmethod
    def of(cls, message: type[Message]) -> ResourceName:
        """Returns the pattern a resource message declares in its ``google.api.resource`` option.

        Raises:
            ValueError: The message declares no resource, or more than one pattern.
        """
        options = message.DESCRIPTOR.GetOptions()
        if not options.HasExtension(resource_pb2.resource):
            raise ValueError(f"{message.DESCRIPTOR.full_name} declares no google.api.resource")
        patterns = list(options.Extensions[resource_pb2.resource].pattern)
        if len(patterns) != 1:
            raise ValueError(f"{message.DESCRIPTOR.full_name} declares {len(patterns)} patterns")
        return cls(patterns[0])

    def parse(self, name: str, field: str) -> tuple[str, ...]:
        """Splits a name into its IDs, checking the collections.

        Example: ``ResourceName("tenants/{tenant}/agents/{agent}").parse("tenants/a/agents/b", "name")``
        returns ``("a", "b")``.

        Raises:
            InvalidArgument: ``name`` does not have exactly this shape.
        """
        match = self._shape.fullmatch(name)
        if match is None:
            raise invalid(field, f"must be a resource name of the form {self.pattern}")
        return match.groups()

    def format(self, *ids: str) -> str:
        """Returns the name with ``ids`` filled in, in order.

        Raises:
            TypeError: Not one ID per variable.
        """
        if len(ids) != len(self._variables):
            raise TypeError(f"{self.pattern} takes {len(self._variables)} IDs, got {len(ids)}")
        return self._template.format(*ids)


#: ``tenants/{tenant}``, the parent of every tenant-owned collection.
TENANT = ResourceName.of(auth_resources.Tenant)
