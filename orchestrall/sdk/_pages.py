"""Every resource of a List call, over its pages (AIP-158 pagination)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar


class PagedRequest(Protocol):
    """A List request (AIP-132): it carries ``page_token``, and ``page_size`` with it."""

    page_token: str


R = TypeVar("R", bound=PagedRequest)


async def pages(method: Callable[[R], Awaitable[Any]], request: R) -> AsyncIterator[Any]:
    """Yields each page (response) of a List call, from ``request``'s page token to the last page.

    The next page is asked for with the same request and the previous answer's
    ``next_page_token``, as AIP-158 prescribes; the last page is the one whose token is empty.
    ``request`` itself is not changed.

    Args:
        method: A List method of a service of :class:`orchestrall.sdk.Client`, for example
            ``client.agents.list_agents``.
        request: Its first request; ``page_size`` is each page's size (the server's default
            when 0).

    Returns:
        An async iterator of the method's responses.

    Raises:
        orchestrall.sdk.errors.OrchestrallError: A page's call failed (after the client's
            retries); the pages before it have been yielded.
    """
    while True:
        page = await method(request)
        yield page
        if not page.next_page_token:
            return
        request = dataclasses.replace(request, page_token=page.next_page_token)


async def paginate(method: Callable[[R], Awaitable[Any]], request: R) -> AsyncIterator[Any]:
    """Yields every resource of a List call, page after page (see :func:`pages`).

    The resources of a page are its response's field number 1, the repeated field AIP-158
    puts first (``agents`` of ``ListAgentsResponse``)::

        async for found in paginate(client.agents.list_agents, agent.ListAgentsRequest(parent=tenant)):
            print(found.name)

    Returns:
        An async iterator of the resource messages, in the server's order.

    Raises:
        orchestrall.sdk.errors.OrchestrallError: A page's call failed.
    """
    field = None
    async for page in pages(method, request):
        field = field or type(page)._betterproto.field_name_by_number[1]  # the same on every page
        for item in getattr(page, field):
            yield item
