"""What the kit knows of the RPC being handled, for code below the handler (set by the guard)."""

from __future__ import annotations

import contextvars

#: The RPC being handled, ``/package.Service/Method`` (empty for background work). Units of work
#: run in a copy of the caller's context, so the database counts statements against it, and
#: page tokens are bound to it.
CURRENT_RPC: contextvars.ContextVar[str] = contextvars.ContextVar("orchestrall_current_rpc", default="")
