"""Logistics tools: geodesic route distance and ETA, fleet utilisation, on-time delivery."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.agent.catalog.bounds import at_most
from services.agent.tools import Tool, ToolError


def route_eta(args: dict[str, Any]) -> dict[str, Any]:
    """Distance, bearing and travel time along the geodesic between two points on the WGS 84 ellipsoid.

    The geodesic is solved by GeographicLib (C. F. F. Karney, "Algorithms for
    geodesics", J. Geodesy 87, 43-55, 2013), accurate to nanometres; the
    GeographicLib documentation's worked example, Wellington to Salamanca, is
    19,959,679.267 m. Road distance is the geodesic times ``detour_factor`` (1 for
    air and sea legs; road networks run about 1.2-1.4 times the straight line).

    Returns:
        ``distance_km`` (geodesic, to 0.001), ``route_km`` (times the detour factor,
        to 0.1), ``initial_bearing_deg`` (clockwise from north, 0-360), and
        ``eta_hours`` at ``speed_kmh`` plus ``stop_hours``.

    Raises:
        ToolError: A speed that is not positive.
    """
    speed = float(args.get("speed_kmh", 0))
    factor = float(args.get("detour_factor", 1.0))
    if speed <= 0:
        raise ToolError("speed_kmh must be positive")
    # Imported on first use: the agent service starts without loading geographiclib.
    from geographiclib.geodesic import Geodesic

    line = Geodesic.WGS84.Inverse(
        float(args["origin_lat"]),
        float(args["origin_lon"]),
        float(args["destination_lat"]),
        float(args["destination_lon"]),
    )
    km = line["s12"] / 1000
    route = km * factor
    return {
        "distance_km": round(km, 3),
        "route_km": round(route, 1),
        "initial_bearing_deg": round(line["azi1"] % 360, 2),
        "eta_hours": round(route / speed + float(args.get("stop_hours", 0)), 2),
    }


def fleet_utilisation(args: dict[str, Any]) -> dict[str, Any]:
    """Time and load utilisation of a fleet's vehicles and of the fleet.

    Time utilisation is the hours a vehicle was in service over the hours it was
    available; load utilisation (vehicle fill) the load carried over capacity. The
    definitions are the UK Department for Transport's, *Key Performance Indicators for
    the Food Supply Chain* (Freight Best Practice, 2006), as fleet totals, not means of
    vehicles' ratios (so a vehicle counts by its hours).

    Returns:
        ``vehicles``: each with ``id``, ``time_utilisation`` (0-1, to 4 places) and
        ``load_utilisation`` when capacity is given; ``fleet_time_utilisation``,
        ``fleet_load_utilisation`` (or None) and ``underused``: the IDs of vehicles
        below ``target``.

    Raises:
        ToolError: No vehicles, available hours that are not positive, or service hours over them.
    """
    vehicles = args.get("vehicles") or []
    target = float(args.get("target", 0.75))
    at_most(vehicles, "vehicles")
    if not vehicles:
        raise ToolError("give at least one vehicle")
    rows, available, used, capacity, load = [], 0.0, 0.0, 0.0, 0.0
    for i, vehicle in enumerate(vehicles):
        hours, service = float(vehicle["available_hours"]), float(vehicle["in_service_hours"])
        if hours <= 0 or not 0 <= service <= hours:
            raise ToolError(f"vehicle {i}: in_service_hours must be between 0 and available_hours (> 0)")
        row: dict[str, Any] = {"id": str(vehicle.get("id", i)), "time_utilisation": round(service / hours, 4)}
        available, used = available + hours, used + service
        if vehicle.get("capacity_kg"):
            row["load_utilisation"] = round(
                float(vehicle.get("load_kg", 0)) / float(vehicle["capacity_kg"]), 4
            )
            capacity, load = capacity + float(vehicle["capacity_kg"]), load + float(vehicle.get("load_kg", 0))
        rows.append(row)
    return {
        "vehicles": rows,
        "fleet_time_utilisation": round(used / available, 4),
        "fleet_load_utilisation": round(load / capacity, 4) if capacity else None,
        "underused": [row["id"] for row in rows if row["time_utilisation"] < target],
    }


def on_time_delivery(args: dict[str, Any]) -> dict[str, Any]:
    """On-time delivery rate and lateness from each delivery's delay against its promised time.

    A delivery is on time when it arrives no later than ``tolerance_minutes`` after
    the time promised to the customer: the SCOR model's "delivery performance to
    customer commit date" (APICS SCOR 12.0, metric RL.2.2): on-time deliveries
    over all deliveries.

    Returns:
        ``deliveries``, ``on_time``, ``on_time_rate`` (0-1, to 4 places),
        ``mean_delay_minutes`` of the late ones, ``p95_delay_minutes`` of all
        (numpy's linear quantile) and ``late``: the indices of the late deliveries.

    Raises:
        ToolError: No deliveries.
    """
    at_most(args.get("delays_minutes") or [], "delays_minutes")
    delays = np.asarray(args.get("delays_minutes") or [], dtype=float)
    tolerance = float(args.get("tolerance_minutes", 0))
    if delays.size == 0:
        raise ToolError("give the delay of at least one delivery (minutes after the promised time)")
    late = delays > tolerance
    return {
        "deliveries": int(delays.size),
        "on_time": int((~late).sum()),
        "on_time_rate": round(float((~late).mean()), 4),
        "mean_delay_minutes": round(float(delays[late].mean()), 1) if late.any() else 0.0,
        "p95_delay_minutes": round(float(np.quantile(delays, 0.95)), 1),
        "late": [int(i) for i in np.flatnonzero(late)],
    }


_LATITUDE = {"type": "number", "minimum": -90, "maximum": 90}
_LONGITUDE = {"type": "number", "minimum": -180, "maximum": 180}

TOOLS: tuple[Tool, ...] = (
    Tool(
        id="route_eta",
        description=(
            "Geodesic distance (WGS 84), initial bearing, route distance and ETA in hours between two "
            "points given by latitude and longitude, at a speed in km/h."
        ),
        parameters={
            "type": "object",
            "properties": {
                "origin_lat": _LATITUDE,
                "origin_lon": _LONGITUDE,
                "destination_lat": _LATITUDE,
                "destination_lon": _LONGITUDE,
                "speed_kmh": {"type": "number", "exclusiveMinimum": 0, "maximum": 1200},
                "detour_factor": {"type": "number", "minimum": 1, "maximum": 3},
                "stop_hours": {"type": "number", "minimum": 0, "maximum": 1000},
            },
            "required": ["origin_lat", "origin_lon", "destination_lat", "destination_lon", "speed_kmh"],
        },
        function=route_eta,
    ),
    Tool(
        id="fleet_utilisation",
        description=(
            "Time utilisation (in-service over available hours) and load utilisation of each vehicle and "
            "of the fleet; lists vehicles under a target."
        ),
        parameters={
            "type": "object",
            "properties": {
                "vehicles": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "available_hours": {"type": "number", "exclusiveMinimum": 0},
                            "in_service_hours": {"type": "number", "minimum": 0},
                            "capacity_kg": {"type": "number", "minimum": 0},
                            "load_kg": {"type": "number", "minimum": 0},
                        },
                        "required": ["available_hours", "in_service_hours"],
                    },
                },
                "target": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["vehicles"],
        },
        function=fleet_utilisation,
    ),
    Tool(
        id="on_time_delivery",
        description=(
            "On-time delivery rate, late deliveries and delay statistics from each delivery's delay in "
            "minutes after its promised time (negative means early)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "delays_minutes": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 1,
                },
                "tolerance_minutes": {"type": "number", "minimum": 0},
            },
            "required": ["delays_minutes"],
        },
        function=on_time_delivery,
    ),
)
