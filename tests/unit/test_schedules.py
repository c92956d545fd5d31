"""Schedules without a clock: cron checks, next fire times across DST, and what a fire time decides."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from services.workflow.models import OverlapPolicy, ScheduleRow
from services.workflow.schedules import (
    ON_TIME_SECONDS,
    _decide,
    cron_violations,
    next_fire_times,
    request_id_of,
    zone_of,
)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NOW = dt.datetime(2027, 3, 26, 12, 0, tzinfo=dt.UTC)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize("cron", ["0 9 * * *", "*/5 * * * 1-5", "* * * * * *", "30 0 9 * * MON"])
def test_five_and_six_field_expressions_are_accepted(cron: str) -> None:
    assert cron_violations(cron, "schedule.cron") == []


@pytest.mark.parametrize("cron", ["", "0 9 * *", "* * * * * * *", "@hourly", "61 * * * *", "0 9 * * nope"])
def test_other_expressions_are_field_violations(cron: str) -> None:
    (violation,) = cron_violations(cron, "schedule.cron")
    assert violation.field == "schedule.cron"


def test_time_zones_are_iana_names() -> None:
    assert zone_of("") == ZoneInfo("UTC")
    assert zone_of("Europe/Amsterdam") == AMSTERDAM
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "Europe/"):
        assert zone_of(bad) is None


def test_a_local_time_moves_in_utc_on_the_last_sunday_of_march() -> None:
    """09:00 in Amsterdam is 08:00 UTC (CET) until 28 March 2027, 07:00 UTC (CEST) from then on."""
    times = next_fire_times("0 9 * * *", AMSTERDAM, _utc("2027-03-26T00:00:00"))
    assert times == [
        _utc("2027-03-26T08:00:00"),
        _utc("2027-03-27T08:00:00"),
        _utc("2027-03-28T07:00:00"),
        _utc("2027-03-29T07:00:00"),
        _utc("2027-03-30T07:00:00"),
    ]
    assert all(t.tzinfo == dt.UTC for t in times)


def test_a_local_time_in_the_spring_gap_fires_once_right_after_it() -> None:
    """02:30 does not exist in Amsterdam on 28 March 2027 (02:00 CET is 03:00 CEST): it fires at 03:00."""
    times = next_fire_times("30 2 * * *", AMSTERDAM, _utc("2027-03-27T00:00:00"), count=3)
    assert times == [_utc("2027-03-27T01:30:00"), _utc("2027-03-28T01:00:00"), _utc("2027-03-29T00:30:00")]


def test_six_fields_fire_every_second() -> None:
    times = next_fire_times("* * * * * *", ZoneInfo("UTC"), _utc("2027-01-01T00:00:00.250000"), count=3)
    assert times == [_utc("2027-01-01T00:00:01"), _utc("2027-01-01T00:00:02"), _utc("2027-01-01T00:00:03")]


def test_a_fire_times_request_id_names_the_schedule_and_the_instant_in_utc() -> None:
    local = dt.datetime(2027, 3, 28, 9, 0, tzinfo=AMSTERDAM)
    assert request_id_of("nightly", local) == "schedule:nightly:2027-03-28T07:00:00+00:00"


SCHEDULE = ScheduleRow(
    tenant_id="t",
    workflow_id="w",
    id="s",
    cron="* * * * * *",
    time_zone="UTC",
    input="",
    overlap_policy=OverlapPolicy.SKIP,
    catchup_seconds=0,
    paused=False,
    last_fire_time=None,
    last_run_id=None,
    buffered_fire_time=None,
    active_since=NOW - dt.timedelta(days=1),
    create_time=NOW - dt.timedelta(days=1),
)


@pytest.mark.parametrize(
    ("policy", "previous_active", "decision"),
    [
        (OverlapPolicy.SKIP, False, "start"),
        (OverlapPolicy.SKIP, True, "overlap"),
        (OverlapPolicy.BUFFER_ONE, True, "buffer"),
        (OverlapPolicy.BUFFER_ONE, False, "start"),
        (OverlapPolicy.ALLOW_ALL, True, "start"),
    ],
)
def test_the_overlap_policy_decides_while_the_previous_run_runs(
    policy: OverlapPolicy, previous_active: bool, decision: str
) -> None:
    schedule = dataclasses.replace(SCHEDULE, overlap_policy=policy)
    assert _decide(schedule, previous_active, NOW - dt.timedelta(seconds=1), NOW) == decision


def test_fire_times_older_than_the_catchup_window_start_nothing() -> None:
    late = NOW - dt.timedelta(hours=2)
    assert _decide(SCHEDULE, False, late, NOW) == "missed"
    assert _decide(SCHEDULE, False, NOW - dt.timedelta(seconds=ON_TIME_SECONDS - 1), NOW) == "start"
    window = dataclasses.replace(SCHEDULE, catchup_seconds=3 * 3600)
    assert _decide(window, False, late, NOW) == "start"
    assert _decide(window, False, NOW - dt.timedelta(hours=4), NOW) == "missed"


def test_paused_deleted_and_earlier_fire_times_start_nothing() -> None:
    assert _decide(None, False, NOW, NOW) == "deleted"
    assert _decide(dataclasses.replace(SCHEDULE, paused=True), False, NOW, NOW) == "paused"
    resumed = dataclasses.replace(SCHEDULE, active_since=NOW, catchup_seconds=3600)
    assert _decide(resumed, False, NOW - dt.timedelta(minutes=5), NOW) == "before_active"
