"""Meter definitions: the built-in meters as meters, and the rules a tenant's meter must follow.

A meter (after OpenMeter's) counts the events of one CloudEvents ``type`` with an
aggregation of the value at ``value_property`` in their ``data``, grouped by the values
at the paths of ``group_by``. Paths are JSONPath in dot notation (RFC 9535 section
2.5.1.1, member-name shorthand): ``$`` then 1 to :data:`MAX_PATH_DEPTH` names of letters,
digits and ``_`` not starting with a digit, each after a ``.``. Names of that form need no
quoting in PostgreSQL's ``jsonb_extract_path`` nor SQLite's ``json_extract``, so both
databases read the same member.
"""

from __future__ import annotations

import datetime as dt
import re

from services.billing.models import Aggregation, MeterRow
from services.billing.plans import BUILT_IN_GROUP_BY, METERS, QUANTITY_KEY
from services.kit.errors import FieldViolation

#: The most member names of a path.
MAX_PATH_DEPTH = 8
#: How long after a window ends its events still count in it, when a meter names no grace.
DEFAULT_LATE_EVENT_GRACE = dt.timedelta(days=1)
#: The built-in meters' grace: 35 days, past the end of any billing period, so their windows count
#: what their totals do.
BUILT_IN_LATE_EVENT_GRACE = dt.timedelta(days=35)
#: The group-by key of the events' CloudEvents ``subject``, which every meter has.
SUBJECT_KEY = "subject"

_PATH = re.compile(rf"\$(?:\.[A-Za-z_][A-Za-z0-9_]*){{1,{MAX_PATH_DEPTH}}}")
_GROUP_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")


def path_names(path: str) -> tuple[str, ...]:
    """Returns the member names of a path, ``$.usage.input`` -> ``("usage", "input")``.

    The path must be valid (:func:`path_violation` finds none).
    """
    return tuple(path[2:].split("."))


def path_violation(field: str, path: str) -> FieldViolation | None:
    """Returns the violation of a path that is not of the dot notation this service reads, or None."""
    if _PATH.fullmatch(path):
        return None
    return FieldViolation(
        field,
        f"must be a JSONPath of 1-{MAX_PATH_DEPTH} member names in dot notation, such as $.tokens"
        " (letters, digits and _, not starting with a digit)",
    )


def violations(meter: MeterRow, prefix: str = "meter") -> list[FieldViolation]:
    """Returns what is wrong with a tenant's meter definition (lengths are the contract's rules).

    Rules: an ``event_type``; an aggregation; ``value_property`` a path, except with
    ``COUNT``, which takes none; each ``group_by`` key 1-63 of ``a-z0-9_`` starting with a
    letter and not ``subject`` (always a key), each value a path.
    """
    found = []
    if not meter.event_type:
        found.append(FieldViolation(f"{prefix}.event_type", "is required: the CloudEvents type counted"))
    if not meter.aggregation:
        found.append(FieldViolation(f"{prefix}.aggregation", "is required"))
    if meter.aggregation == Aggregation.COUNT:
        if meter.value_property:
            found.append(FieldViolation(f"{prefix}.value_property", "must be empty: COUNT counts events"))
    elif meter.aggregation and not meter.value_property:
        found.append(FieldViolation(f"{prefix}.value_property", f"is required with {meter.aggregation}"))
    elif meter.aggregation and (bad := path_violation(f"{prefix}.value_property", meter.value_property)):
        found.append(bad)
    for key, path in sorted(meter.group_by.items()):
        field = f'{prefix}.group_by["{key}"]'
        if not _GROUP_KEY.fullmatch(key) or key == SUBJECT_KEY:
            found.append(
                FieldViolation(field, "keys are 1-63 of a-z, 0-9 and _, start with a letter, and not subject")
            )
        elif bad := path_violation(field, path):
            found.append(bad)
    return found


def built_in(tenant_id: str, meter_id: str) -> MeterRow | None:
    """Returns the tenant's view of the built-in meter ``meter_id``, or None when there is none."""
    meter = METERS.get(meter_id)
    if meter is None:
        return None
    return MeterRow(
        tenant_id=tenant_id,
        id=meter.name,
        display_name=meter.name.replace("_", " ").capitalize(),
        description=f"Built in: the sum of data.{QUANTITY_KEY} of the events of type {meter.event_type}.",
        event_type=meter.event_type,
        aggregation=Aggregation.SUM,
        value_property=f"$.{QUANTITY_KEY}",
        group_by=dict(BUILT_IN_GROUP_BY),
        late_event_grace_seconds=int(BUILT_IN_LATE_EVENT_GRACE.total_seconds()),
        unit=meter.unit,
        request_id=None,
        create_time=None,
        update_time=None,
    )


def built_ins(tenant_id: str) -> list[MeterRow]:
    """Returns the tenant's view of every built-in meter, by ID."""
    return [row for name in sorted(METERS) if (row := built_in(tenant_id, name)) is not None]
