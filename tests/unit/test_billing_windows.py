"""Window boundaries in IANA time zones, against hand-counted calendars (tzdata's rules for each zone)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.billing.windows import MAX_WINDOWS, WindowSize, windows, zone_of
from services.kit.errors import InvalidArgument


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def hours(found: list[tuple[dt.datetime, dt.datetime]]) -> list[float]:
    return [(end - start).total_seconds() / 3600 for start, end in found]


def test_a_day_of_a_dst_change_is_23_or_25_hours() -> None:
    berlin = zone_of("Europe/Berlin")
    spring = windows(at("2026-03-28T00:00+01:00"), at("2026-03-31T00:00+02:00"), WindowSize.DAY, berlin)
    assert hours(spring) == [24, 23, 24]
    autumn = windows(at("2026-10-24T00:00+02:00"), at("2026-10-26T00:00+01:00"), WindowSize.DAY, berlin)
    assert hours(autumn) == [24, 25]
    assert autumn[1][0] == at("2026-10-24T22:00Z")


def test_hours_follow_the_zone_where_its_offset_is_not_whole_hours() -> None:
    kolkata = zone_of("Asia/Kolkata")
    found = windows(at("2026-01-01T00:00+05:30"), at("2026-01-01T03:00+05:30"), WindowSize.HOUR, kolkata)
    assert [start.isoformat() for start, _ in found] == [
        "2025-12-31T18:30:00+00:00",
        "2025-12-31T19:30:00+00:00",
        "2025-12-31T20:30:00+00:00",
    ]
    # The night summer time ends in Berlin has 25 hours: 02:00-03:00 happens twice.
    night = windows(
        at("2026-10-25T00:00+02:00"), at("2026-10-26T00:00+01:00"), WindowSize.HOUR, zone_of("Europe/Berlin")
    )
    assert len(night) == 25 and set(hours(night)) == {1}


def test_a_day_whose_midnight_is_skipped_starts_after_the_gap() -> None:
    # Chile moves clocks from 00:00 to 01:00 on 2026-09-06 (tzdata: first Sunday of September).
    santiago = zone_of("America/Santiago")
    found = windows(at("2026-09-05T00:00-04:00"), at("2026-09-07T00:00-03:00"), WindowSize.DAY, santiago)
    assert [start.isoformat() for start, _ in found] == [
        "2026-09-05T04:00:00+00:00",
        "2026-09-06T04:00:00+00:00",
    ]
    assert hours(found) == [24, 23]


def test_months_are_calendar_months_of_the_zone() -> None:
    new_york = zone_of("America/New_York")
    found = windows(at("2026-01-01T00:00-05:00"), at("2026-04-01T00:00-04:00"), WindowSize.MONTH, new_york)
    assert hours(found) == [31 * 24, 28 * 24, 31 * 24 - 1]


def test_ranges_off_the_boundaries_or_too_long_are_refused() -> None:
    utc = zone_of("")
    with pytest.raises(InvalidArgument) as caught:
        windows(at("2026-01-01T00:30Z"), at("2026-01-02T00:00Z"), WindowSize.HOUR, utc)
    assert [v.field for v in caught.value.violations] == ["start_time"]
    with pytest.raises(InvalidArgument) as caught:
        windows(
            at("2026-01-01T00:00Z"),
            at("2026-01-01T00:00Z") + dt.timedelta(minutes=MAX_WINDOWS + 1),
            WindowSize.MINUTE,
            utc,
        )
    assert [v.field for v in caught.value.violations] == ["window_size"]
    assert (
        len(
            windows(
                at("2026-01-01T00:00Z"),
                at("2026-01-01T00:00Z") + dt.timedelta(minutes=MAX_WINDOWS),
                WindowSize.MINUTE,
                utc,
            )
        )
        == MAX_WINDOWS
    )
    with pytest.raises(InvalidArgument):
        zone_of("../etc/passwd")
