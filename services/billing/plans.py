"""Built-in meters, the built-in free plan's limits, billing periods, and a plan's edge rate.

Units are UCUM annotations, as OpenTelemetry metric units use them (``{run}``,
``{token}``). Limits are per billing period, the calendar month in UTC; a limit
of 0 means unlimited. Plans are data (``plans`` rows, :mod:`services.billing.plan_store`);
:data:`FREE_LIMITS` are the limits of the ``free`` plan the migrations seed as the default.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.billing.models import PlanRow

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

#: The hard limits per period of the built-in ``free`` plan, as billing migration 0011 seeds
#: it (the default plan); the migration keeps its own copy, as migrations never import code.
FREE_LIMITS: Mapping[str, float] = {
    "agent_runs": 1000,
    "model_input_tokens": 2_000_000,
    "model_output_tokens": 500_000,
}


def edge_rate_of(plan: PlanRow) -> int:
    """Returns the requests per second a plan's tenants may send through every gateway; 0: no plan rate.

    Fractions round up (a plan of 0.5/s admits one request a second, the rate limit
    service's smallest unit). The rate limit service reads a tenant's plan with
    :func:`services.billing.plan_store.tenant_plan` (its subscription's, or the default plan).
    """
    return math.ceil(plan.request_rate)


def period_of(instant: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the billing period containing ``instant``: its calendar month in UTC.

    Returns:
        ``(start, end)``, aware UTC datetimes; start inclusive, end exclusive.
    """
    utc = instant.astimezone(dt.UTC)
    start = dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(utc.year + utc.month // 12, utc.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end
