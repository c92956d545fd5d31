"""Usage events as CloudEvents 1.0: read from the wire into the rows the store records, validated.

Two wires carry them: the internal ``IngestUsageEvents`` (``orchestrall.billing.v1.UsageEvent``
messages, attributes as fields, ``data`` a ``google.protobuf.Struct``) and the operator's
HTTP requests (``IngestCloudEvents``: the CloudEvents HTTP protocol binding 1.0.2, structured
content mode, section 3.2, and batched content mode, section 3.3, in the JSON event format
1.0.2). Both give :class:`EventRow` dicts, or field violations named
``events[{i}].{attribute}`` (CloudEvents attribute names on HTTP, the message's field
names over gRPC).

Rules and where they come from (CloudEvents 1.0.2, "Context Attributes", section 3.1):
``id``, ``source``, ``specversion`` and ``type`` are required non-empty strings, and
``specversion`` is ``1.0``; ``subject`` is optional and non-empty when present; ``time``
is an RFC 3339 timestamp; extension attribute names are lower-case ASCII letters and
digits (section 3.1.1 "Attribute Naming Convention"). Metering adds: ``data`` is a JSON
object (JSON event format section 3.1: it is the ``data`` member; ``data_base64`` is
binary and cannot be metered) of at most :data:`MAX_DATA_BYTES` as compact JSON; an event
of a built-in meter's type carries a finite, non-negative number in ``data.quantity``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.api import httpbody_pb2
from google.protobuf import json_format

from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import errors
from services.billing.models import EventRow
from services.billing.plans import METER_OF_TYPE, METERS, QUANTITY_KEY
from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.names import TENANT, validate_id
from services.kit.timestamps import from_timestamp

SPEC_VERSION = "1.0"
#: Media type of one event in structured content mode (HTTP binding section 3.2).
STRUCTURED = "application/cloudevents+json"
#: Media type of a JSON array of events in batched content mode (HTTP binding section 3.3).
BATCH = "application/cloudevents-batch+json"
#: The most events one request records.
MAX_EVENTS = 1000
#: The most bytes an event's ``data`` takes as compact JSON.
MAX_DATA_BYTES = 16 * 1024
#: The most characters of ``id``, ``source`` and ``type``, and of ``subject``; the contract's.
MAX_KEY_CHARS = 255
MAX_SUBJECT_CHARS = 1024

# The JSON format's required and optional attributes, and its data members (section 2.2, 3.1).
_STRING_ATTRIBUTES = ("id", "source", "specversion", "type")
_KNOWN = {*_STRING_ATTRIBUTES, "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"}
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
# RFC 3339 section 5.6 ``date-time``: a full date, ``T``, a full time with an offset or ``Z``.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def media_type(content_type: str) -> str:
    """Returns the media type of a ``Content-Type`` value, lower case, without parameters (RFC 9110 8.3.1)."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_media_type(content_type: str) -> bool:
    """Tells whether a ``datacontenttype`` is JSON: ``application/json`` or a ``+json`` suffix (RFC 6839)."""
    kind = media_type(content_type)
    return kind == "application/json" or (kind.count("/") == 1 and kind.endswith("+json"))


def _metered(
    prefix: str, type_: str, data: Mapping[str, Any], violations: list[FieldViolation]
) -> tuple[str, float]:
    """Returns the built-in meter of ``type_`` and the quantity ``data`` holds for it, or ``("", 0.0)``.

    Adds a violation on ``{prefix}.data.quantity`` when the type is a built-in meter's and
    ``data.quantity`` is not a finite, non-negative number (booleans are not numbers).
    """
    meter = METER_OF_TYPE.get(type_)
    if meter is None:
        return "", 0.0
    value = data.get(QUANTITY_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        violations.append(
            FieldViolation(
                f"{prefix}.data.{QUANTITY_KEY}",
                f"events of type {type_!r} carry the {meter.name} used as a finite number, not negative",
            )
        )
        return "", 0.0
    return meter.name, float(value)


def _check_data(prefix: str, data: Any, violations: list[FieldViolation]) -> dict[str, Any]:
    """Returns ``data`` when it is a JSON object within :data:`MAX_DATA_BYTES`; else adds a violation."""
    if not isinstance(data, dict):
        violations.append(FieldViolation(f"{prefix}.data", "must be a JSON object"))
        return {}
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_DATA_BYTES:
        violations.append(
            FieldViolation(f"{prefix}.data", f"is {size} bytes as JSON; at most {MAX_DATA_BYTES}")
        )
    return data


def _check_length(field: str, value: str, most: int, violations: list[FieldViolation]) -> None:
    if len(value) > most:
        violations.append(FieldViolation(field, f"is {len(value)} characters; at most {most}"))


def _parse_time(field: str, value: Any, violations: list[FieldViolation]) -> dt.datetime | None:
    """Returns an RFC 3339 ``time`` in UTC; adds a violation for anything else."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        violations.append(FieldViolation(field, "must be an RFC 3339 timestamp, e.g. 2026-12-01T17:30:00Z"))
        return None
    try:
        return dt.datetime.fromisoformat(value.upper()).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # 2026-02-30, or an offset past year 1 or 9999
        violations.append(FieldViolation(field, "is not a date and time that exists"))
        return None


def from_json(index: int, document: Any, tenant_id: str, now: dt.datetime) -> EventRow | list[FieldViolation]:
    """Reads one event in the JSON event format 1.0.2 for ``tenant_id``.

    Args:
        index: Its position in the request (0 in structured mode), for violations' names.
        document: The parsed JSON.
        tenant_id: The tenant it is recorded for.
        now: Its ``ingest_time``, and its ``time`` when it has none.

    Returns:
        The row, or the violations (``events[{index}].{attribute}``) when it is not valid.
    """
    prefix = f"events[{index}]"
    if not isinstance(document, dict):
        return [FieldViolation(prefix, "must be a JSON object, one event")]
    violations: list[FieldViolation] = []
    for name in _STRING_ATTRIBUTES:
        value = document.get(name)
        if not isinstance(value, str) or not value:
            violations.append(FieldViolation(f"{prefix}.{name}", "is required, a non-empty string"))
    if isinstance(version := document.get("specversion"), str) and version and version != SPEC_VERSION:
        violations.append(FieldViolation(f"{prefix}.specversion", f"must be {SPEC_VERSION!r}"))
    for name in ("id", "source", "type"):
        if isinstance(value := document.get(name), str):
            _check_length(f"{prefix}.{name}", value, MAX_KEY_CHARS, violations)
    subject = document.get("subject", "")
    if "subject" in document and (not isinstance(subject, str) or not subject):
        violations.append(FieldViolation(f"{prefix}.subject", "must be a non-empty string when present"))
        subject = ""
    _check_length(f"{prefix}.subject", subject, MAX_SUBJECT_CHARS, violations)
    time = _parse_time(f"{prefix}.time", document["time"], violations) if "time" in document else now
    content_type = document.get("datacontenttype", "application/json")
    if not isinstance(content_type, str) or not _is_json_media_type(content_type):
        violations.append(
            FieldViolation(f"{prefix}.datacontenttype", "must be application/json (metered data is JSON)")
        )
    if "data_base64" in document:
        violations.append(FieldViolation(f"{prefix}.data_base64", "metered events carry JSON data in data"))
    data = _check_data(prefix, document.get("data", {}), violations)
    for name in document.keys() - _KNOWN:
        if not _EXTENSION_NAME.fullmatch(name):
            violations.append(
                FieldViolation(f"{prefix}.{name}", "attribute names are 1-20 lower-case letters and digits")
            )
    type_ = document.get("type")
    meter, quantity = _metered(prefix, type_, data, violations) if isinstance(type_, str) else ("", 0.0)
    if violations:
        return violations
    assert time is not None, "a time that did not parse is a violation"
    return EventRow(
        tenant_id=tenant_id,
        source=document["source"],
        event_id=document["id"],
        ingest_time=now,
        type=document["type"],
        subject=subject,
        time=time,
        data=data,
        meter=meter,
        quantity=quantity,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def from_http(body: httpbody_pb2.HttpBody, tenant_id: str, now: dt.datetime) -> list[EventRow]:
    """Reads the events of an HTTP request in structured or batched content mode.

    Args:
        body: The request's body and ``Content-Type``.
        tenant_id: The tenant the events are recorded for.
        now: Their ``ingest_time``, and the ``time`` of those without one.

    Returns:
        The rows, in the request's order.

    Raises:
        InvalidArgument: ``UNSUPPORTED_CONTENT_TYPE`` for a media type other than
            :data:`STRUCTURED` and :data:`BATCH`; ``INVALID_USAGE_EVENTS`` for a body that
            is not JSON (RFC 8259; ``NaN`` and ``Infinity`` are not) or not of the mode's
            shape, a batch of not 1 to :data:`MAX_EVENTS` events, or with the violations
            of every bad event.
    """
    kind = media_type(body.content_type)
    if kind not in (STRUCTURED, BATCH):
        raise errors.unsupported_content_type(body.content_type, (STRUCTURED, BATCH))
    try:
        document = json.loads(body.data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: nested past the decoder's depth
        raise errors.invalid_usage_events([FieldViolation("body", "is not JSON (RFC 8259)")]) from None
    if kind == STRUCTURED:
        documents = [document]
    elif not isinstance(document, list):
        raise errors.invalid_usage_events([FieldViolation("body", "must be a JSON array of events")])
    elif not 1 <= len(document) <= MAX_EVENTS:
        violation = FieldViolation("events", f"holds {len(document)} events; 1 to {MAX_EVENTS}")
        raise errors.invalid_usage_events([violation])
    else:
        documents = document
    return _all_or_raise(from_json(i, item, tenant_id, now) for i, item in enumerate(documents))


def _all_or_raise(results: Iterable[EventRow | list[FieldViolation]]) -> list[EventRow]:
    """Returns the rows when no event had violations; raises with every violation otherwise."""
    rows: list[EventRow] = []
    violations: list[FieldViolation] = []
    for result in results:
        if isinstance(result, list):
            violations.extend(result)
        else:
            rows.append(result)
    if violations:
        raise errors.invalid_usage_events(violations)
    return rows


def _tenant_of(field: str, name: str, valid: dict[str, str], violations: list[FieldViolation]) -> str:
    """Returns the tenant ID of a ``tenants/{tenant}`` name (remembered in ``valid``); adds violations."""
    if name in valid:
        return valid[name]
    try:
        (tenant_id,) = TENANT.parse(name, field)
        valid[name] = validate_id(tenant_id, field)
    except InvalidArgument as error:
        violations.extend(error.violations)
        return ""
    return valid[name]


def _from_message(
    index: int, event: res.UsageEvent, now: dt.datetime, tenants: dict[str, str]
) -> EventRow | list[FieldViolation]:
    """Reads the ``index``-th event of an ``IngestUsageEvents`` batch (lengths: the contract's rules)."""
    prefix = f"events[{index}]"
    violations = [
        FieldViolation(f"{prefix}.{name}", "is required")
        for name, value in (("id", event.id), ("source", event.source))
        if not value
    ]
    tenant_id = _tenant_of(f"{prefix}.tenant", event.tenant, tenants, violations)
    if event.spec_version not in ("", SPEC_VERSION):
        violations.append(FieldViolation(f"{prefix}.spec_version", f"must be {SPEC_VERSION!r}"))
    if bool(event.meter) == bool(event.type):
        violations.append(FieldViolation(f"{prefix}.type", "set either type (a CloudEvent) or meter"))
        type_, data, meter, quantity = "", {}, "", 0.0
    elif event.meter:  # the shorthand of a built-in meter's event
        known = METERS.get(event.meter)
        if known is None:
            violations.append(errors.unknown_meter_violation(f"{prefix}.meter", event.meter))
        if not math.isfinite(event.quantity) or event.quantity < 0:
            violations.append(FieldViolation(f"{prefix}.quantity", "must be a finite number, not negative"))
        type_ = known.event_type if known else ""
        data, meter, quantity = {QUANTITY_KEY: event.quantity}, event.meter, event.quantity
    else:
        type_ = event.type
        data = _check_data(prefix, json_format.MessageToDict(event.data), violations)
        meter, quantity = _metered(prefix, type_, data, violations)
    if violations:
        return violations
    return EventRow(
        tenant_id=tenant_id,
        source=event.source,
        event_id=event.id,
        ingest_time=now,
        type=type_,
        subject=event.subject,
        time=from_timestamp(event.time) if event.HasField("time") else now,
        data=data,
        meter=meter,
        quantity=quantity,
    )


def from_messages(events: Iterable[res.UsageEvent], now: dt.datetime) -> list[EventRow]:
    """Reads a batch of ``IngestUsageEvents``, all or nothing.

    Args:
        events: The request's events.
        now: Their ``ingest_time``, and the ``time`` of those without one.

    Returns:
        The rows, in the request's order.

    Raises:
        InvalidArgument: ``INVALID_USAGE_EVENTS`` with the violations of every bad event.
    """
    tenants: dict[str, str] = {}  # a batch is mostly one tenant's: each name is parsed once
    return _all_or_raise(_from_message(i, event, now, tenants) for i, event in enumerate(events))
