"""Meters, plans and billing periods; code constants for now.

Units are UCUM annotations, as OpenTelemetry metric units use them (``{run}``,
``{token}``). Limits are per billing period, the calendar month in UTC; a limit
of 0 means unlimited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

#: The CloudEvents ``type`` prefix of the built-in meters' events (reverse DNS of
#: orchestrall.dev, as CloudEvents 1.0 section 3.1.1 recommends for ``type``).
USAGE_TYPE_PREFIX = "dev.orchestrall.usage."
#: The key of ``data`` that holds a built-in meter's quantity.
QUANTITY_KEY = "quantity"
#: What the built-in meters group by: group-by key to its path in ``data`` (the agent
#: service puts them beside ``quantity``, :mod:`services.kit.usage`): the model that
#: answered, the agent's resource name, and the principal (API key, user or service
#: account subject) that started the run.
BUILT_IN_GROUP_BY: Mapping[str, str] = {"agent": "$.agent", "model": "$.model", "principal": "$.principal"}


@dataclass(frozen=True)
class Meter:
    """A built-in kind of metered usage: the sum of ``data.quantity`` of its events.

    Every built-in meter groups by :data:`BUILT_IN_GROUP_BY`.

    Attributes:
        name: Meter name, e.g. ``agent_runs``.
        unit: UCUM unit, e.g. ``{token}``.
    """

    name: str
    unit: str

    @property
    def event_type(self) -> str:
        """Returns the CloudEvents ``type`` of the meter's events, ``dev.orchestrall.usage.{name}``."""
        return USAGE_TYPE_PREFIX + self.name


@dataclass(frozen=True)
class Plan:
    """A plan: a limit per meter for each billing period, and a request rate at the gateway.

    Attributes:
        name: Plan name, e.g. ``free``.
        limits: Meter name to the most that may be used in one period; 0 means unlimited.
        request_rate: Requests per second each tenant on the plan may make through the
            gateway, every gateway replica together (:mod:`services.billing.ratelimit`);
            0 means unlimited.
    """

    name: str
    limits: Mapping[str, float]
    request_rate: int = 0


METERS: Mapping[str, Meter] = {
    m.name: m
    for m in (
        Meter("agent_runs", "{run}"),
        Meter("model_calls", "{call}"),
        Meter("model_input_tokens", "{token}"),
        Meter("model_output_tokens", "{token}"),
        Meter("tool_calls", "{call}"),
    )
}

#: Built-in meter by the CloudEvents ``type`` of its events.
METER_OF_TYPE: Mapping[str, Meter] = {m.event_type: m for m in METERS.values()}

FREE = Plan(
    "free",
    {"agent_runs": 1000, "model_input_tokens": 2_000_000, "model_output_tokens": 500_000},
    # The gateway's own default per-replica rate (ORCHESTRALL_GATEWAY_TENANT_RATE), now for all replicas.
    request_rate=200,
)


def plan_of(tenant_id: str) -> Plan:
    """Return the tenant's plan; every tenant is on ``free`` for now."""
    return FREE


async def request_rate_of(tenant_id: str) -> int:
    """Returns the request rate of the tenant's plan, in requests per second; 0 means unlimited.

    The one place the rate limit service reads a plan's rate (it caches the answer for
    ``services.billing.ratelimit.RATE_CACHE_SECONDS``); a coroutine, so that it can read the
    tenant's subscription from the database.
    """
    return plan_of(tenant_id).request_rate


def period_of(instant: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the billing period containing ``instant``: its calendar month in UTC.

    Returns:
        ``(start, end)``, aware UTC datetimes; start inclusive, end exclusive.
    """
    utc = instant.astimezone(dt.UTC)
    start = dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(utc.year + utc.month // 12, utc.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end
