"""SQL of tenants' HTTP tools, through the kit's repository; every query filters by the tenant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.agent.models import HttpTool, HttpToolRow
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository

HTTP_TOOLS = Repository(HttpTool, HttpToolRow, order=NEWEST_FIRST)


def create_http_tool(tx: Tx, tool: HttpToolRow) -> HttpToolRow | None:
    """Inserts an HTTP tool, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The tool; None when its ID is taken (nothing is written then).
    """
    return HTTP_TOOLS.create(tx, tool)


def get_http_tool(tx: Tx, tool_id: str, *, lock: bool = False) -> HttpToolRow | None:
    """Returns the tenant's HTTP tool, or None."""
    return HTTP_TOOLS.get(tx, tool_id, lock=lock)


def get_http_tools(tx: Tx, tool_ids: Sequence[str]) -> list[HttpToolRow]:
    """Returns those of the tenant's HTTP tools whose IDs are in ``tool_ids``, newest first."""
    if not tool_ids:
        return []
    return HTTP_TOOLS.find_all(tx, HTTP_TOOLS.table.c.id.in_(sorted(set(tool_ids))))


def all_http_tools(tx: Tx, limit: int) -> list[HttpToolRow]:
    """Returns the tenant's HTTP tools by ID, at most ``limit`` (the catalog's order)."""
    return sorted(HTTP_TOOLS.find_all(tx, limit=limit), key=lambda tool: tool.id)


def list_http_tools(tx: Tx, page: Page) -> Listing[HttpToolRow]:
    """Returns a page of the tenant's HTTP tools, newest first, and whether more follow."""
    return HTTP_TOOLS.list_page(tx, page)


def update_http_tool(tx: Tx, tool_id: str, values: Mapping[str, Any]) -> HttpToolRow | None:
    """Sets ``values`` (column name to value) on the tenant's HTTP tool; None when there is none."""
    return HTTP_TOOLS.update(tx, (tool_id,), values)


def delete_http_tool(tx: Tx, tool_id: str) -> bool:
    """Deletes the tenant's HTTP tool; False when there was none."""
    return HTTP_TOOLS.delete(tx, tool_id)
