"""Windows of time usage is added up in: minutes, hours, days and months of an IANA time zone.

Boundaries are wall-clock boundaries of the zone, found with the IANA time zone database
(:mod:`zoneinfo`, PEP 615): a day starts at local midnight, so the day of a DST change is
23 or 25 hours long, and a month at midnight of its first day. Where local midnight does
not exist (a DST gap at midnight, as in America/Santiago) the day starts at the first
instant after the gap; where it exists twice, at the first (``fold=0``, PEP 495). An hour
starts where the local minute and second are 0, so a zone offset by 30 or 45 minutes
from UTC has its own hours. Every boundary is returned as an aware UTC datetime.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from enum import StrEnum

from services.kit.errors import FieldViolation, InvalidArgument

#: The most windows one query asks for (a month of hours is 744, a day of minutes 1,440).
MAX_WINDOWS = 1500
UTC_NAME = "UTC"


class WindowSize(StrEnum):
    """The size of a query's windows; ``QueryUsageRequest.WindowSize.WINDOW_SIZE_<value>`` on the wire."""

    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    """Returns the IANA time zone ``name`` (empty: UTC).

    Raises:
        InvalidArgument: On ``time_zone``, for a name the time zone database does not have.
    """
    if not name or name == UTC_NAME:
        return zoneinfo.ZoneInfo(UTC_NAME)
    if name not in _zone_names():
        raise InvalidArgument(
            [FieldViolation("time_zone", f"{name!r} is not an IANA time zone, e.g. Europe/Berlin or UTC")]
        )
    return zoneinfo.ZoneInfo(name)


def _local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Returns the first instant of ``day`` in ``zone``, in UTC (after a gap when midnight is in one)."""
    # A wall time in a gap converts with the offset before it (PEP 495), which lands just
    # after the gap: the day's first instant.
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)


def _floor(instant: dt.datetime, size: WindowSize, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Returns the start of the window of ``size`` that holds ``instant`` (aware UTC)."""
    if size == WindowSize.MINUTE:
        return instant.replace(second=0, microsecond=0)
    local = instant.astimezone(zone)
    if size == WindowSize.HOUR:
        return (instant - dt.timedelta(minutes=local.minute, seconds=local.second)).replace(microsecond=0)
    day = local.date() if size == WindowSize.DAY else local.date().replace(day=1)
    return _local_midnight(day, zone)


def _next(boundary: dt.datetime, size: WindowSize, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Returns the boundary after ``boundary`` (itself a boundary of ``size``)."""
    if size == WindowSize.MINUTE:
        return boundary + dt.timedelta(minutes=1)
    if size == WindowSize.HOUR:
        candidate = boundary + dt.timedelta(minutes=15)  # offsets are whole quarter hours
        while candidate.astimezone(zone).minute != 0:
            candidate += dt.timedelta(minutes=15)
        return candidate
    local = boundary.astimezone(zone).date()
    if size == WindowSize.DAY:
        return _local_midnight(local + dt.timedelta(days=1), zone)
    first = dt.date(local.year + local.month // 12, local.month % 12 + 1, 1)
    return _local_midnight(first, zone)


def windows(
    start: dt.datetime, end: dt.datetime, size: WindowSize | None, zone: zoneinfo.ZoneInfo
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Returns the windows that tile ``[start, end)``, in order.

    Args:
        start: Start of the range (aware), inclusive.
        end: End of the range (aware), exclusive.
        size: The windows' size; None for one window over the range.
        zone: The time zone windows are aligned in.

    Returns:
        ``(start, end)`` of each window, aware UTC datetimes.

    Raises:
        InvalidArgument: ``end_time`` not after ``start_time``; with a size, either not on
            a boundary of it, or more than :data:`MAX_WINDOWS` windows.
    """
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if end <= start:
        raise InvalidArgument([FieldViolation("end_time", "must be after start_time")])
    if size is None:
        return [(start, end)]
    violations = [
        FieldViolation(field, f"must be on a {size.lower()} boundary in the time zone {zone.key}")
        for field, instant in (("start_time", start), ("end_time", end))
        if _floor(instant, size, zone) != instant
    ]
    if violations:
        raise InvalidArgument(violations)
    found: list[tuple[dt.datetime, dt.datetime]] = []
    boundary = start
    while boundary < end:
        if len(found) == MAX_WINDOWS:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "window_size", f"the range holds more than {MAX_WINDOWS} windows of a {size.lower()}"
                    )
                ]
            )
        after = _next(boundary, size, zone)
        found.append((boundary, after))
        boundary = after
    return found
