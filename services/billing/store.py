"""SQL of the billing service. Every usage query filters by the transaction's tenant.

Usage events and the running totals they add to are written in one transaction,
so a total always equals the sum of its period's events, and duplicates (an event
whose ``(tenant, source, id)`` was recorded before) add nothing.
Reservations are decided under a per-tenant lock against those totals plus what
the tenant's other reservations hold, and a settlement records its usage events
and closes its reservation in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    distinct,
    func,
    literal_column,
    select,
    table,
    union_all,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from services.billing import rollups
from services.billing.meters import SUBJECT_KEY, built_ins, path_names
from services.billing.models import (
    Aggregation,
    EventRow,
    MeterRow,
    MeterTotal,
    Reservation,
    ReservationMeter,
    ReservationMeterRow,
    ReservationRecord,
    ReservationRow,
    ReservationState,
    TenantMeter,
    UsageEvent,
    UsageTotal,
    UsageValue,
)
from services.billing.plans import METERS, QUANTITY_KEY, Meter, period_of
from services.kit.calls import CURRENT_RPC
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import Order, Repository, table_of
from services.kit.timestamps import as_utc

_EVENTS = table_of(UsageEvent)
_TOTALS = table_of(UsageTotal)


def _add_totals(dialect: Any) -> Any:
    statement = dialect.insert(_TOTALS)
    return statement.on_conflict_do_update(
        index_elements=[_TOTALS.c.tenant_id, _TOTALS.c.meter, _TOTALS.c.period_start],
        set_={
            "quantity": _TOTALS.c.quantity + statement.excluded.quantity,
            "event_count": _TOTALS.c.event_count + statement.excluded.event_count,
        },
    )


#: The session's staging table on PostgreSQL, made on each new connection
#: (:meth:`services.kit.db.Database.session_setup`): a batch is copied into it, then moved.
BATCH_TABLE = "usage_event_batch"
BATCH_TABLE_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {BATCH_TABLE} (LIKE usage_events) ON COMMIT DELETE ROWS"
)
_BATCH = table(BATCH_TABLE, *(column(c.key) for c in _EVENTS.columns))
_COLUMNS = [c.key for c in _EVENTS.columns]
# The binary COPY wire types of usage_events' columns, in order.
_COPY_TYPES = {
    "VARCHAR": "text",
    "FLOAT": "float8",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "JSONB": "jsonb",
}
_BATCH_TYPES = [
    _COPY_TYPES[c.type.compile(dialect=postgresql.dialect()).split("(")[0]] for c in _EVENTS.columns
]
_COPY = f"COPY {BATCH_TABLE} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def _move_batch() -> Any:
    """The statement that records the copied batch of the transaction's tenant, but for events seen before.

    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` inserts the events whose
    keys are new (a concurrent insert of the same key waits for the other transaction,
    then skips the event; events go in key order, so two batches of a tenant that share
    keys wait for each other rather than deadlock). A second data-modifying CTE adds those
    of built-in meters to their periods' totals (``date_trunc('month')`` in UTC, the
    billing period of :func:`period_of`); PostgreSQL runs every data-modifying CTE to
    completion, read or not (PostgreSQL docs, "WITH Queries"). The statement returns the
    keys of the events it inserted.
    """
    inserted = (
        postgresql.insert(_EVENTS)
        .from_select(
            _COLUMNS,
            select(*(_BATCH.c[name] for name in _COLUMNS))
            .where(_BATCH.c.tenant_id == bindparam("tenant_id"))
            .order_by(_BATCH.c.source, _BATCH.c.event_id),
        )
        .on_conflict_do_nothing()
        .returning(
            _EVENTS.c.tenant_id,
            _EVENTS.c.source,
            _EVENTS.c.event_id,
            _EVENTS.c.meter,
            _EVENTS.c.quantity,
            _EVENTS.c.time,
        )
        .cte("inserted")
    )
    month = func.timezone("UTC", func.date_trunc("month", func.timezone("UTC", inserted.c.time)))
    added = postgresql.insert(_TOTALS).from_select(
        ["tenant_id", "meter", "period_start", "quantity", "event_count"],
        select(inserted.c.tenant_id, inserted.c.meter, month, func.sum(inserted.c.quantity), func.count())
        .where(inserted.c.meter != "")
        .group_by(inserted.c.tenant_id, inserted.c.meter, month),
    )
    added = added.on_conflict_do_update(
        index_elements=[_TOTALS.c.tenant_id, _TOTALS.c.meter, _TOTALS.c.period_start],
        set_={
            "quantity": _TOTALS.c.quantity + added.excluded.quantity,
            "event_count": _TOTALS.c.event_count + added.excluded.event_count,
        },
    )
    return select(inserted.c.source, inserted.c.event_id).add_cte(
        added.returning(_TOTALS.c.meter).cte("added")
    )


# Built once: the statements of an ingestion.
_INSERT_NEW_EVENTS = (
    sqlite.insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.source, _EVENTS.c.event_id)
)
_ADD_TOTALS = _add_totals(sqlite)
_MOVE_BATCH = _move_batch()


def _copy(tx: Tx, rows: Sequence[EventRow]) -> None:
    """Copies rows into the staging table (binary COPY, formatted by psycopg's C code)."""
    tx.link.statements[CURRENT_RPC.get()] += 1
    with tx.link.cursor.copy(_COPY) as copy:
        copy.set_types(_BATCH_TYPES)
        for row in rows:
            copy.write_row([row[name] for name in _COLUMNS])  # type: ignore[literal-required]


def _first_of_each_key(rows: Sequence[EventRow]) -> list[EventRow]:
    """Returns ``rows`` without the repeats of a ``(source, event_id)`` key: the first of each stays."""
    seen: set[tuple[str, str]] = set()
    first = []
    for row in rows:
        key = (row["source"], row["event_id"])
        if key not in seen:
            seen.add(key)
            first.append(row)
    return first


def _recorded(rows: list[EventRow], keys: Sequence[Any]) -> list[EventRow]:
    """Returns the rows whose ``(source, event_id)`` is among ``keys``, the keys an insert returned."""
    if len(keys) == len(rows):
        return rows
    new = {(source, event_id) for source, event_id in keys}
    return [row for row in rows if (row["source"], row["event_id"]) in new]


def add_usage_events(tx: Tx, rows: Sequence[EventRow]) -> int:
    """Records usage events of the transaction's tenant not seen before, and adds them to the totals.

    An event is new when no event of its ``(source, event_id)`` key is recorded
    (CloudEvents 1.0 section 3.1.1; the key of ``usage_events``), and only the first of a
    key repeated within ``rows`` counts. Concurrent deliveries of one event record it
    once: each inserts it with ``ON CONFLICT DO NOTHING``, and only the events this call
    inserted are added to the totals and rollups (:mod:`services.billing.rollups`) of
    their built-in meters. On PostgreSQL the batch is copied into the session's staging
    table and recorded by one statement (:func:`_move_batch`) and one upsert of its
    rollups, for 500 events about a tenth of the client CPU of any multi-row ``INSERT``;
    the rollups are summed before the events are recorded, so that the totals' row,
    which every batch of the tenant's month updates, stays locked for as short a time as
    can be. On SQLite the events go in one multi-row statement (SQLAlchemy's
    "insertmanyvalues") and the totals are summed here.

    Returns:
        How many events were recorded; the others were duplicates, also within ``rows``.
    """
    rows = _first_of_each_key(rows)
    if not rows:
        return 0
    if tx.dialect == "postgresql":
        sums = rollups.sums(rows)
        _copy(tx, rows)
        recorded = _recorded(rows, tx.execute(_MOVE_BATCH, {"tenant_id": tx.tenant_id}).all())
        rollups.upsert(tx, sums if len(recorded) == len(rows) else rollups.sums(recorded))
        tx.changed |= bool(recorded)
        return len(recorded)
    new = _recorded(rows, tx.execute(_INSERT_NEW_EVENTS, rows).all())
    if not new:
        return 0
    rollups.upsert(tx, rollups.sums(new))
    totals: dict[tuple[str, dt.datetime], tuple[float, int]] = {}
    for row in new:
        if not row["meter"]:
            continue
        key = (row["meter"], period_of(as_utc(row["time"]))[0])
        total, count = totals.get(key, (0.0, 0))
        totals[key] = (total + row["quantity"], count + 1)
    if totals:
        tx.execute(
            _ADD_TOTALS,
            [
                {
                    "tenant_id": tx.tenant_id,
                    "meter": meter,
                    "period_start": start,
                    "quantity": q,
                    "event_count": n,
                }
                for (meter, start), (q, n) in totals.items()
            ],
        )
    tx.changed = True
    return len(new)


def meter_event(
    tenant_id: str, source: str, event_id: str, meter: Meter, quantity: float, subject: str, now: dt.datetime
) -> EventRow:
    """Returns the usage event of ``quantity`` of a built-in meter, recorded at ``now``.

    Its type is the meter's (``dev.orchestrall.usage.{meter}``) and its data
    ``{"quantity": quantity}``, as the ``meter``/``quantity`` shorthand of
    ``IngestUsageEvents`` reads.
    """
    return EventRow(
        tenant_id=tenant_id,
        source=source,
        event_id=event_id,
        ingest_time=now,
        type=meter.event_type,
        subject=subject,
        time=now,
        data={QUANTITY_KEY: quantity},
        meter=meter.name,
        quantity=quantity,
    )


def usage_totals(tx: Tx, meters: Collection[str], period_start: dt.datetime) -> dict[str, MeterTotal]:
    """Returns the tenant's usage of ``meters`` in the billing period starting at ``period_start``.

    Returns:
        Meter name to its total; meters without events in the period are absent.
    """
    query = select(_TOTALS.c.meter, _TOTALS.c.quantity, _TOTALS.c.event_count).where(
        _TOTALS.c.tenant_id == tx.tenant_id,
        _TOTALS.c.period_start == period_start,
        _TOTALS.c.meter.in_(list(meters)),
    )
    return {meter: MeterTotal(float(quantity), int(count)) for meter, quantity, count in tx.execute(query)}


# Reservations -------------------------------------------------------------------------------------

RESERVATIONS = Repository(Reservation, ReservationRow)
RESERVATION_METERS = Repository(ReservationMeter, ReservationMeterRow)
_RESERVATIONS = RESERVATIONS.table
_RESERVATION_METERS = RESERVATION_METERS.table

#: The CloudEvents ``source`` of the usage events a settlement records; their ``id`` is
#: ``{reservation ID}:{meter}``, so a reservation's usage is recorded once.
RESERVATION_SOURCE = "//billing.orchestrall.dev/reservations"
#: The name of the tenant lock every reservation decision and settlement takes.
_RESERVATIONS_LOCK = "billing.reservations"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A meter whose limit a reservation would exceed; quantities in the meter's unit.

    Attributes:
        meter: The meter.
        limit: The plan's limit for the period.
        used: Usage recorded in the period.
        held: What the tenant's other active, unexpired reservations hold.
        requested: What the reservation asked for.
    """

    meter: str
    limit: float
    used: float
    held: float
    requested: float


class QuotaShortfall(Exception):
    """A reservation does not fit in the plan's limits (nothing was written).

    Attributes:
        shortfalls: One per meter that would be exceeded, in the order asked.
    """

    def __init__(self, shortfalls: Sequence[Shortfall]) -> None:
        super().__init__(", ".join(s.meter for s in shortfalls))
        self.shortfalls = list(shortfalls)


class ReservationClosed(Exception):
    """The reservation is settled or released, so it cannot be released or settled (nothing was written).

    Attributes:
        state: Its state.
    """

    def __init__(self, state: ReservationState) -> None:
        super().__init__(state)
        self.state = state


def used_and_held(
    tx: Tx, meters: Collection[str], period_start: dt.datetime, now: dt.datetime
) -> tuple[dict[str, float], dict[str, float]]:
    """Returns the tenant's usage of ``meters`` in a period and what its reservations hold of them now.

    One statement (``UNION ALL``), so both parts are read in one snapshot: the period's
    running totals, and the sums over the tenant's ``ACTIVE`` reservations whose
    ``expire_time`` is after ``now``.

    Args:
        tx: The unit of work.
        meters: The meters.
        period_start: Start of the billing period.
        now: The instant reservations are held at.

    Returns:
        ``(used, held)``, each meter name to a quantity in the meter's unit; meters
        without usage or holds are absent.
    """
    names = list(meters)
    used = select(literal_column("0").label("held"), _TOTALS.c.meter, _TOTALS.c.quantity).where(
        _TOTALS.c.tenant_id == tx.tenant_id,
        _TOTALS.c.period_start == period_start,
        _TOTALS.c.meter.in_(names),
    )
    held = (
        select(literal_column("1"), _RESERVATION_METERS.c.meter, func.sum(_RESERVATION_METERS.c.quantity))
        .join(
            _RESERVATIONS,
            and_(
                _RESERVATIONS.c.tenant_id == _RESERVATION_METERS.c.tenant_id,
                _RESERVATIONS.c.id == _RESERVATION_METERS.c.reservation_id,
            ),
        )
        .where(
            _RESERVATIONS.c.tenant_id == tx.tenant_id,
            _RESERVATIONS.c.state == ReservationState.ACTIVE,
            _RESERVATIONS.c.expire_time > now,
            _RESERVATION_METERS.c.meter.in_(names),
        )
        .group_by(_RESERVATION_METERS.c.meter)
    )
    found: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for kind, meter, quantity in tx.execute(union_all(used, held)):
        found[int(kind)][meter] = float(quantity)
    return found


def get_reservation(tx: Tx, reservation_id: str, *, lock: bool = False) -> ReservationRecord | None:
    """Returns the tenant's reservation with its quantities, or None.

    Args:
        tx: The unit of work.
        reservation_id: Its ID.
        lock: Lock its row until the transaction ends.
    """
    row = RESERVATIONS.get(tx, reservation_id, lock=lock)
    if row is None:
        return None
    meters = RESERVATION_METERS.find_all(tx, _RESERVATION_METERS.c.reservation_id == reservation_id)
    return ReservationRecord(row, {m.meter: m.quantity for m in meters})


def reserve(
    tx: Tx, record: ReservationRecord, limits: Mapping[str, float], period_start: dt.datetime
) -> ReservationRecord:
    """Makes a reservation if every meter it holds fits in its limit, or returns the one with its ID.

    Under the tenant's reservation lock (:meth:`Tx.lock_tenant`), so that decisions of
    one tenant are made one at a time on every replica: for each meter with a limit
    above 0 and a quantity above 0, ``used + held + requested <= limit``, where
    ``used`` is the period's usage total and ``held`` what the tenant's active
    reservations unexpired at ``record.row.create_time`` hold. Either all meters fit and
    the reservation is written, or nothing is.

    Args:
        tx: The unit of work.
        record: The new reservation, ``ACTIVE``.
        limits: The plan's limit per meter for the period; 0 or absent means unlimited.
        period_start: Start of the current billing period.

    Returns:
        ``record`` when it was made, or the reservation an earlier call made with its ID.

    Raises:
        QuotaShortfall: A meter would exceed its limit.
    """
    tx.lock_tenant(_RESERVATIONS_LOCK)
    earlier = get_reservation(tx, record.row.id)
    if earlier is not None:
        return earlier
    limited = [m for m, q in record.quantities.items() if q > 0 and limits.get(m, 0) > 0]
    if limited:
        used, held = used_and_held(tx, limited, period_start, record.row.create_time)
        shortfalls = [
            Shortfall(meter, limits[meter], used.get(meter, 0.0), held.get(meter, 0.0), q)
            for meter, q in record.quantities.items()
            if meter in limited
        ]
        over = [s for s in shortfalls if s.used + s.held + s.requested > s.limit]
        if over:
            raise QuotaShortfall(over)
    RESERVATIONS.insert(tx, record.row)
    RESERVATION_METERS.insert_many(
        tx,
        [
            {"tenant_id": tx.tenant_id, "reservation_id": record.row.id, "meter": meter, "quantity": quantity}
            for meter, quantity in record.quantities.items()
        ],
    )
    return record


def settle(
    tx: Tx,
    reservation_id: str,
    usage: Mapping[str, float],
    now: dt.datetime,
    events: Sequence[EventRow] | None = None,
) -> ReservationRecord | None:
    """Records a reservation's usage and closes it as ``SETTLED``, once.

    The usage events (one per meter of ``usage`` above 0, source
    :data:`RESERVATION_SOURCE`, id ``{reservation}:{meter}``, time ``now``; or the
    caller's own ``events``) go through :func:`add_usage_events`, so they add to the
    period's totals in this same transaction and an event recorded before (by
    ``IngestUsageEvents`` from the caller's outbox) or again counts once. With
    ``events``, the settled quantities are their sum per built-in meter. The tenant's reservation lock
    is taken first: what the reservation held turns into usage at one instant for
    every concurrent :func:`reserve`. An expired reservation is settled like an
    active one (the usage happened).

    Args:
        tx: The unit of work.
        reservation_id: The reservation.
        usage: Meter to the quantity used, in the meter's unit (empty with ``events``).
        now: The settlement's time.
        events: The caller's usage events of the work, of the transaction's tenant.

    Returns:
        The settled reservation (unchanged when it was settled before, with its first
        usage), or None when the tenant has no such reservation.

    Raises:
        ReservationClosed: It was released.
    """
    tx.lock_tenant(_RESERVATIONS_LOCK)
    found = get_reservation(tx, reservation_id, lock=True)
    if found is None or found.row.state == ReservationState.SETTLED:
        return found
    if found.row.state == ReservationState.RELEASED:
        raise ReservationClosed(ReservationState.RELEASED)
    if events is not None:
        add_usage_events(tx, events)
        summed: dict[str, float] = {}
        for event in events:
            if event["meter"]:
                summed[event["meter"]] = summed.get(event["meter"], 0.0) + event["quantity"]
        usage = summed
    else:
        add_usage_events(
            tx,
            [
                meter_event(
                    tx.tenant_id,
                    RESERVATION_SOURCE,
                    f"{reservation_id}:{meter}",
                    METERS[meter],
                    quantity,
                    found.row.subject,
                    now,
                )
                for meter, quantity in usage.items()
                if quantity > 0
            ],
        )
    values = {"state": ReservationState.SETTLED, "end_time": now, "settled_quantities": dict(usage)}
    row = RESERVATIONS.update(tx, (reservation_id,), values)
    assert row is not None, "the reservation was read locked in this transaction"
    return ReservationRecord(row, found.quantities)


def release(tx: Tx, reservation_id: str, now: dt.datetime) -> ReservationRecord | None:
    """Closes a reservation as ``RELEASED`` without usage; a released one is returned as it is.

    Args:
        tx: The unit of work.
        reservation_id: The reservation.
        now: The release's time.

    Returns:
        The released reservation, or None when the tenant has no such reservation.

    Raises:
        ReservationClosed: It was settled.
    """
    found = get_reservation(tx, reservation_id, lock=True)
    if found is None or found.row.state == ReservationState.RELEASED:
        return found
    if found.row.state == ReservationState.SETTLED:
        raise ReservationClosed(ReservationState.SETTLED)
    row = RESERVATIONS.update(tx, (reservation_id,), {"state": ReservationState.RELEASED, "end_time": now})
    assert row is not None, "the reservation was read locked in this transaction"
    return ReservationRecord(row, found.quantities)


# Meters ---------------------------------------------------------------------------------------------

METER_DEFINITIONS = Repository(TenantMeter, MeterRow, order=(Order("id"),))
_METERS = METER_DEFINITIONS.table
#: Page tokens of meter lists carry ``[kind, id]``: built-in meters (kind 0) come first, by
#: ID, then the tenant's (kind 1), by ID.
_BUILT_IN, _OWN = 0, 1


def add_meter(tx: Tx, row: MeterRow) -> MeterRow | None:
    """Inserts a tenant's meter, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        ``row``, or the earlier request's meter; None when the tenant has a meter of that ID.
    """
    return METER_DEFINITIONS.create(tx, row)


def get_meter(tx: Tx, meter_id: str, *, lock: bool = False) -> MeterRow | None:
    """Returns the tenant's own meter of that ID, or None (``lock``: until the transaction ends)."""
    return METER_DEFINITIONS.get(tx, meter_id, lock=lock)


def list_meters(tx: Tx, page: Page) -> Listing[MeterRow]:
    """Returns a page of the tenant's meters: the built-in ones first, then its own, each by ID.

    The built-in meters are not rows; they are put before the rows of the page, and the
    page token says which kind its last meter was, so pages are exact.
    """
    kind, last = page.after if page.after is not None else (_BUILT_IN, "")
    ahead = [m for m in built_ins(tx.tenant_id) if kind == _BUILT_IN and m.id > last]
    taken = ahead[: page.size]
    own = Page(page.size - len(taken), (last,) if kind == _OWN else None, page.fingerprint)
    rows = METER_DEFINITIONS.list_page(tx, own)
    more = len(ahead) > len(taken) or rows.more
    return Listing([*taken, *rows.records], page, more, lambda m: [_BUILT_IN if m.built_in else _OWN, m.id])


def update_meter(tx: Tx, meter_id: str, values: Mapping[str, Any]) -> MeterRow | None:
    """Sets ``values`` (column to value) on the tenant's meter; returns it, or None when there is none."""
    return METER_DEFINITIONS.update(tx, (meter_id,), values)


def delete_meter(tx: Tx, meter_id: str) -> bool:
    """Deletes the tenant's meter; returns whether there was one. Its events stay."""
    deleted = METER_DEFINITIONS.delete(tx, meter_id)
    tx.changed |= deleted
    return deleted


# Usage queries --------------------------------------------------------------------------------------


def _json_number(dialect: str, names: Sequence[str]) -> ColumnElement[Any]:
    """The number at a path of ``usage_events.data``, or NULL where there is none or it is not a number."""
    data = _EVENTS.c.data
    if dialect == "postgresql":
        is_number = func.jsonb_typeof(func.jsonb_extract_path(data, *names)) == "number"
        return case((is_number, cast(func.jsonb_extract_path_text(data, *names), Float)))
    path = "$." + ".".join(names)
    return case((func.json_type(data, path).in_(["integer", "real"]), func.json_extract(data, path)))


def _json_text(dialect: str, names: Sequence[str]) -> ColumnElement[Any]:
    """The value at a path of ``usage_events.data`` as text (a string without its quotes), or NULL."""
    data = _EVENTS.c.data
    if dialect == "postgresql":
        return func.jsonb_extract_path_text(data, *names)
    return cast(func.json_extract(data, "$." + ".".join(names)), String)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What to add up: a meter's events in windows, grouped and filtered.

    Attributes:
        meter: The meter.
        windows: ``(start, end)`` of each window, aware UTC, in order.
        group_by: Keys of the meter's ``group_by``, or ``subject``, to group by.
        subjects: Only events of these subjects; empty for all.
        filters: Group-by key to the text its value must be.
        limit: The most windows and groups returned.
    """

    meter: MeterRow
    windows: Sequence[tuple[dt.datetime, dt.datetime]]
    group_by: Sequence[str]
    subjects: Sequence[str]
    filters: Mapping[str, str]
    limit: int


class QueryTooLarge(Exception):
    """A usage query has more windows and groups than its limit (nothing is returned)."""


def query_usage(tx: Tx, query: UsageQuery) -> list[UsageValue]:
    """Returns the meter's value per window and group, from the tenant's recorded events, in one statement.

    A window ``[start, end)`` counts the events of the meter's type whose ``time`` is in it
    and whose ``ingest_time`` is before ``end`` plus the meter's late-event grace. Windows
    are a ``VALUES`` list joined on time ranges, so the events are read through
    ``(tenant_id, type, time)``; values and group keys are read from ``data`` by the
    database (``jsonb_extract_path`` on PostgreSQL, ``json_extract`` on SQLite). SUM, MAX
    and LATEST leave out events whose value is not a number, UNIQUE_COUNT those without one.

    Returns:
        The values, by window, then by group values (None before text).

    A built-in meter's query is answered from its rollups when they can answer it
    (:func:`services.billing.rollups.serves`).

    Raises:
        QueryTooLarge: More than ``query.limit`` windows and groups have events.
    """
    meter = query.meter
    if meter.built_in and rollups.serves(query.windows, [*query.group_by, *query.filters], query.subjects):
        rolled = rollups.query(tx, meter.id, query.windows, query.group_by, query.filters, query.limit)
        if len(rolled) > query.limit:
            raise QueryTooLarge()
        return _in_order(rollups.values_of(rolled, query.group_by), query.group_by)
    grace = dt.timedelta(seconds=meter.late_event_grace_seconds)
    windows = (
        values(
            column("idx", Integer),
            column("start", DateTime(timezone=True)),
            column("stop", DateTime(timezone=True)),
            column("cutoff", DateTime(timezone=True)),
            name="windows",
        )
        .data([(i, start, end, end + grace) for i, (start, end) in enumerate(query.windows)])
        .cte("windows")
    )
    groups: list[ColumnElement[Any]] = [
        (
            _EVENTS.c.subject
            if key == SUBJECT_KEY
            else _json_text(tx.dialect, path_names(meter.group_by[key]))
        ).label(f"g{i}")
        for i, key in enumerate(query.group_by)
    ]
    where = [
        _EVENTS.c.tenant_id == tx.tenant_id,
        _EVENTS.c.type == meter.event_type,
        _EVENTS.c.time >= windows.c.start,
        _EVENTS.c.time < windows.c.stop,
        _EVENTS.c.ingest_time < windows.c.cutoff,
        *(
            _json_text(tx.dialect, path_names(meter.group_by[k])) == v
            for k, v in sorted(query.filters.items())
        ),
    ]
    if query.subjects:
        where.append(_EVENTS.c.subject.in_(list(query.subjects)))
    events = select().select_from(windows).join(_EVENTS, and_(*where[2:5])).where(*where[:2], *where[5:])
    aggregation = Aggregation(meter.aggregation)
    number = _json_number(tx.dialect, path_names(meter.value_property)) if meter.value_property else None
    if aggregation == Aggregation.LATEST:
        assert number is not None, "LATEST meters have a value property"
        order = [_EVENTS.c.time.desc(), _EVENTS.c.ingest_time.desc()]
        ranked = (
            events.add_columns(
                windows.c.idx,
                *groups,
                number.label("value"),
                func.row_number().over(partition_by=[windows.c.idx, *groups], order_by=order).label("rank"),
            )
            .where(number.is_not(None))
            .subquery()
        )
        statement = select(
            ranked.c.idx, *(ranked.c[f"g{i}"] for i in range(len(groups))), ranked.c.value
        ).where(ranked.c.rank == 1)
    else:
        if aggregation == Aggregation.COUNT:
            value: ColumnElement[Any] = func.count()
        elif aggregation == Aggregation.UNIQUE_COUNT:
            text = _json_text(tx.dialect, path_names(meter.value_property))
            value = func.count(distinct(text))
            events = events.where(text.is_not(None))
        else:
            assert number is not None, "SUM and MAX meters have a value property"
            value = (func.sum if aggregation == Aggregation.SUM else func.max)(number)
            events = events.where(number.is_not(None))
        statement = events.add_columns(windows.c.idx, *groups, value.label("value")).group_by(
            windows.c.idx, *groups
        )
    rows = tx.execute(statement.limit(query.limit + 1)).all()
    if len(rows) > query.limit:
        raise QueryTooLarge()
    found = []
    for idx, *keys, total in rows:
        named = dict(zip(query.group_by, keys, strict=True))
        subject = named.pop(SUBJECT_KEY, None)
        found.append(
            UsageValue(
                window=int(idx),
                value=float(total),
                subject=subject or "",
                groups={k: str(v) for k, v in named.items() if v is not None},
            )
        )
    return _in_order(found, query.group_by)


def _in_order(found: list[UsageValue], keys: Sequence[str]) -> list[UsageValue]:
    """Returns usage values by window, then by group values (None before text)."""
    found.sort(key=lambda u: (u.window, [(v is not None, v or "") for v in group_of(u, keys)]))
    return found


def group_of(value: UsageValue, keys: Sequence[str]) -> list[str | None]:
    """Returns a value's group, in the order of ``keys`` (None for a key the events had no value at)."""
    return [value.subject if k == SUBJECT_KEY else value.groups.get(k) for k in keys]
