"""Size bounds of tool arguments, checked in the tools rather than stated in their JSON Schemas.

A local model server turns a tool's JSON Schema into a grammar for constrained
decoding, and llama.cpp's converter spells ``maxItems`` and ``maxLength`` out as
nested optional repetitions: a bound of thousands makes a grammar it refuses,
and the model call fails. So the schemas state types, enums and value ranges,
and each tool checks its sizes here (the request's 2 MiB limit caps them first).
"""

from __future__ import annotations

from collections.abc import Sized

from services.agent.tools import ToolError

#: The most items an array argument may hold.
MAX_ITEMS = 10_000


def at_most(values: Sized, field: str, limit: int = MAX_ITEMS) -> None:
    """Raises :class:`ToolError` when ``values`` has more than ``limit`` items."""
    if len(values) > limit:
        raise ToolError(f"{field} may have at most {limit} items")
