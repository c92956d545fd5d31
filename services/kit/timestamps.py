"""Conversions between aware ``datetime`` (UTC) and ``google.protobuf.Timestamp``."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware datetime; naive values (SQLite returns them) are taken as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_timestamp(value: dt.datetime | None) -> Timestamp | None:
    """Returns a Timestamp for ``value`` (naive values are taken as UTC), or None.

    Whole integer arithmetic on the offset from the epoch: exact to the
    microsecond, and cheaper than ``Timestamp.FromDatetime`` on every resource a
    service returns.
    """
    if value is None:
        return None
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)) - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def from_timestamp(value: Timestamp) -> dt.datetime:
    """Returns an aware UTC datetime for ``value`` (to the microsecond, as ``ToDatetime`` does).

    Raises:
        OverflowError: The instant is outside what ``datetime`` holds (years 1-9999).
    """
    return _EPOCH + dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
