"""The tool catalog: deterministic functions agents can call.

Each tool has a JSON Schema (draft 2020-12 subset the OpenAI function-calling
API accepts) and a pure function from arguments to a JSON-able result.
Constraining arguments with ``enum`` lets grammar-constrained local models
produce valid calls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator


class ToolError(Exception):
    """The arguments do not make sense for the tool; the message goes back to the model."""


@dataclass(frozen=True)
class Tool:
    """A callable tool.

    Attributes:
        id: Tool ID; its resource name is ``tools/{id}``.
        description: What it does, for the model.
        parameters: JSON Schema of the arguments object.
        function: Computes the result from validated arguments.
        validator: Checks arguments against ``parameters`` (JSON Schema 2020-12, the
            ``jsonschema`` library); made once with the tool, which fails on a bad schema.
    """

    id: str
    description: str
    parameters: dict[str, Any]
    function: Callable[[dict[str, Any]], Any]
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Draft202012Validator.check_schema(self.parameters)
        object.__setattr__(self, "validator", Draft202012Validator(self.parameters))

    @property
    def name(self) -> str:
        """Resource name, ``tools/{id}``."""
        return f"tools/{self.id}"

    @property
    def function_name(self) -> str:
        """The function name the model calls it by: its ID."""
        return self.id

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Computes the result in a worker thread, so a slow tool holds up its own run only.

        Args:
            arguments: Arguments that passed ``validator``.

        Returns:
            A JSON-able result.

        Raises:
            ToolError: The arguments do not make sense for the tool.
        """
        return await asyncio.to_thread(self.function, arguments)


# Latitude, longitude (degrees, WGS 84) of major logistics hubs.
HUBS: dict[str, tuple[float, float]] = {
    "Rotterdam": (51.9244, 4.4777),
    "Hamburg": (53.5511, 9.9937),
    "Antwerp": (51.2194, 4.4025),
    "Berlin": (52.5200, 13.4050),
    "Paris": (48.8566, 2.3522),
    "Madrid": (40.4168, -3.7038),
    "Milan": (45.4642, 9.1900),
    "Warsaw": (52.2297, 21.0122),
    "Vienna": (48.2082, 16.3738),
    "Lyon": (45.7640, 4.8357),
}
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
ROAD_FACTOR = 1.2  # road distance over great-circle distance, a common planning rule of thumb
TRUCK_SPEED_KMH = 70.0


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance in kilometres between two (lat, lon) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def route_distance(args: dict[str, Any]) -> dict[str, Any]:
    """Distance and drive time between two hubs.

    Returns:
        ``great_circle_km``, ``road_km`` (x1.2) and ``drive_hours`` at 70 km/h, rounded to 0.1.

    Raises:
        ToolError: Unknown hub, or origin equals destination.
    """
    origin, destination = args.get("origin"), args.get("destination")
    for label, hub in (("origin", origin), ("destination", destination)):
        if hub not in HUBS:
            raise ToolError(f"unknown {label} {hub!r}; known hubs: {', '.join(HUBS)}")
    if origin == destination:
        raise ToolError("origin and destination are the same hub")
    km = great_circle_km(HUBS[str(origin)], HUBS[str(destination)])
    road = km * ROAD_FACTOR
    return {
        "origin": origin,
        "destination": destination,
        "great_circle_km": round(km, 1),
        "road_km": round(road, 1),
        "drive_hours": round(road / TRUCK_SPEED_KMH, 1),
    }


def invoice_total(args: dict[str, Any]) -> dict[str, Any]:
    """Subtotal, tax and total of invoice lines, in the invoice's currency, rounded to cents.

    Raises:
        ToolError: No lines, or a negative quantity, price or tax rate.
    """
    lines = args.get("lines") or []
    rate = float(args.get("tax_rate_percent", 0))
    if not lines:
        raise ToolError("an invoice needs at least one line")
    if rate < 0:
        raise ToolError("tax_rate_percent must not be negative")
    subtotal = 0.0
    for line in lines:
        quantity, price = float(line.get("quantity", 0)), float(line.get("unit_price", 0))
        if quantity < 0 or price < 0:
            raise ToolError("quantities and prices must not be negative")
        subtotal += quantity * price
    tax = subtotal * rate / 100
    return {"subtotal": round(subtotal, 2), "tax": round(tax, 2), "total": round(subtotal + tax, 2)}


CATALOG: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            id="route_distance",
            description="Road distance (km) and truck drive time (h) between two European logistics hubs.",
            parameters={
                "type": "object",
                "properties": {
                    "origin": {"type": "string", "enum": list(HUBS)},
                    "destination": {"type": "string", "enum": list(HUBS)},
                },
                "required": ["origin", "destination"],
            },
            function=route_distance,
        ),
        Tool(
            id="invoice_total",
            description="Subtotal, tax and total of an invoice from its lines and a tax rate in percent.",
            parameters={
                "type": "object",
                "properties": {
                    "lines": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "description": {"type": "string"},
                                "quantity": {"type": "number"},
                                "unit_price": {"type": "number"},
                            },
                            "required": ["quantity", "unit_price"],
                        },
                    },
                    "tax_rate_percent": {"type": "number"},
                },
                "required": ["lines", "tax_rate_percent"],
            },
            function=invoice_total,
        ),
    )
}

# The industry tools of the agent templates (services/agent/catalog); their modules import Tool from here.
from services.agent.catalog.registry import TOOLS as _INDUSTRY_TOOLS  # noqa: E402

CATALOG.update((tool.name, tool) for tool in _INDUSTRY_TOOLS)
