"""Usage ingestion on PostgreSQL: ``IngestUsageEvents`` against a raw psycopg ``executemany``.

Both insert the same events (same IDs, tenant, type, data, quantities, subjects
and times, :func:`events`) into the same ``usage_events`` table of the PostgreSQL
stack's billing schema, in batches of ``ingest_batch`` (500) with
``ingest_concurrency`` batches in flight, one transaction per batch, after the
table is emptied (``TRUNCATE``), so each run inserts fresh rows. The service inserts
only events whose keys are new (``ON CONFLICT DO NOTHING``) and adds them to the
running totals and rollups; the baseline inserts the events only:

* the service: the billing process on core 0 called over mTLS with the agent's
  workload certificate (``IngestUsageEvents`` is internal; the agent may call it,
  :mod:`services.kit.policy`) by the load generator on core 1;
* the baseline: ``python -m benchmark.ingest`` on core 0, psycopg 3's
  ``AsyncCursor.executemany`` of a plain ``INSERT`` (psycopg pipelines the rows),
  connected as the services' role with the transaction bound to the tenant as
  the service binds it (``set_config('app.tenant_id', ...)``, row-level security).

PostgreSQL's backends for both run on core 1. A run counts events for
``seconds`` after ``warmup`` batches, or until the prepared events run out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import islice

import psycopg
from google.protobuf import struct_pb2
from psycopg.types.json import Jsonb

from benchmark.harness import (
    MEASURED_CORE,
    OTHER_CORE,
    CpuWindow,
    Goal,
    Row,
    Sample,
    Throughput,
    paired_ratio,
    pinned,
)
from benchmark.loadgen import run_plan, sample_of, write_requests
from benchmark.mesh import AGENT, TENANT, Bench, measured, plain_url
from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import resources_pb2 as res
from services.kit.db import app_url, schema_name
from services.kit.timestamps import to_timestamp

INGEST = "/orchestrall.billing.v1.BillingService/IngestUsageEvents"
SOURCE = "//agent.orchestrall.dev"
METER = "model_input_tokens"
#: Batches prepared per run; the time limit normally ends a run first.
SUPPLY_BATCHES = 400
_EPOCH = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
#: The CloudEvents ``type`` of the built-in meter's events (``dev.orchestrall.usage.{meter}``).
TYPE = f"dev.orchestrall.usage.{METER}"
_INSERT = (
    "INSERT INTO usage_events"
    " (tenant_id, source, event_id, ingest_time, type, subject, time, data, meter, quantity)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Event:
    """One usage event as both sides insert it.

    Attributes:
        id: Event ID (CloudEvents ``id``).
        quantity: Tokens.
        subject: The run the usage is for.
        time: When the usage happened.
    """

    id: str
    quantity: float
    subject: str
    time: dt.datetime


def events(count: int) -> list[Event]:
    """Returns ``count`` distinct events of the benchmark tenant, the same on every call."""
    return [
        Event(
            id=f"bench-{i:08d}",
            quantity=float(100 + i % 400),
            subject=f"{AGENT}/runs/run-{i // 10:07d}",
            time=_EPOCH + dt.timedelta(milliseconds=i),
        )
        for i in range(count)
    ]


def _data(quantity: float) -> struct_pb2.Struct:
    data = struct_pb2.Struct()
    data.update({"quantity": quantity})
    return data


def requests(batch: Sequence[Event]) -> bytes:
    """Returns one serialised ``IngestUsageEventsRequest`` of ``batch``, CloudEvents as the agent sends."""
    return pb.IngestUsageEventsRequest(
        events=[
            res.UsageEvent(
                id=event.id,
                source=SOURCE,
                tenant=f"tenants/{TENANT}",
                spec_version="1.0",
                type=TYPE,
                data=_data(event.quantity),
                subject=event.subject,
                time=to_timestamp(event.time),
            )
            for event in batch
        ]
    ).SerializeToString()


def batches(items: Sequence[Event], size: int) -> list[list[Event]]:
    """Returns ``items`` cut into lists of ``size`` (the last may be shorter)."""
    iterator = iter(items)
    return [chunk for chunk in iter(lambda: list(islice(iterator, size)), [])]


@dataclass
class RawPlan:
    """What the raw psycopg client does (``python -m benchmark.ingest``, JSON on stdin).

    Attributes:
        dsn: libpq URL of the services' role.
        schema: The billing schema (``search_path``).
        batch: Events per ``executemany``.
        supply_batches: Batches prepared.
        warmup_batches: Leading batches not counted.
        concurrency: Connections, each with one batch in flight.
        seconds: Counting stops after this long (or when the batches run out).
    """

    dsn: str
    schema: str
    batch: int
    supply_batches: int
    warmup_batches: int
    concurrency: int
    seconds: float


async def _raw(plan: RawPlan) -> dict[str, float]:
    now = dt.datetime.now(dt.UTC)
    rows: list[list[tuple[object, ...]]] = [
        [
            (
                TENANT,
                SOURCE,
                e.id,
                now,
                TYPE,
                e.subject,
                e.time,
                Jsonb({"quantity": e.quantity}),
                METER,
                e.quantity,
            )
            for e in chunk
        ]
        for chunk in batches(events(plan.batch * plan.supply_batches), plan.batch)
    ]
    connections = [
        await psycopg.AsyncConnection.connect(plan.dsn, options=f"-csearch_path={plan.schema}")
        for _ in range(plan.concurrency)
    ]
    # Connected: the parent pins the backends now, then says go.
    print("connected", flush=True)
    sys.stdin.readline()
    counted = stored = 0
    deadline = float("inf")

    async def drain(
        conn: psycopg.AsyncConnection, queue: list[list[tuple[object, ...]]], count: bool
    ) -> None:
        nonlocal counted, stored
        while queue and time.perf_counter() < deadline:
            chunk = queue.pop()
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.execute("SELECT set_config('app.tenant_id', %s, true)", (TENANT,))
                await cursor.executemany(_INSERT, chunk)
            stored += len(chunk)
            if count:
                counted += len(chunk)

    warmup = rows[: plan.warmup_batches][::-1]
    await asyncio.gather(*(drain(conn, warmup, False) for conn in connections))
    queue = rows[plan.warmup_batches :][::-1]
    window = CpuWindow([os.getpid()])
    deadline = time.perf_counter() + plan.seconds
    await asyncio.gather(*(drain(conn, queue, True) for conn in connections))
    window.close()
    for conn in connections:
        await conn.close()
    return {
        "rate": counted / window.seconds,
        "stored": stored,
        "cpu": window.shares[os.getpid()],
        "core_busy": window.core_busy[OTHER_CORE],
        "measured_core_busy": window.core_busy[MEASURED_CORE],
    }


class IngestFigures:
    """``IngestUsageEvents`` on PostgreSQL ÷ raw psycopg, events per second.

    Args:
        bench: The running stacks; the PostgreSQL one is used.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self._mesh = bench.postgres
        settings = bench.settings
        billing = self._mesh.config.settings("billing")
        self._schema = schema_name(billing, "billing")
        self._app_dsn = plain_url(app_url(billing) or "")
        self._requests = bench.work_dir / "ingest-requests.bin"
        chunks = batches(events(settings.ingest_batch * SUPPLY_BATCHES), settings.ingest_batch)
        write_requests(self._requests, [requests(chunk) for chunk in chunks])
        self.service = Throughput("IngestUsageEvents", self._service_run)
        self.raw = Throughput("raw psycopg executemany", self._raw_run)

    @property
    def _warmup_batches(self) -> int:
        return 2 * self._bench.settings.ingest_concurrency

    def _truncate(self) -> None:
        """Empties ``usage_events`` and starts each run from the same database state.

        A ``CHECKPOINT`` first writes out what the previous run left, so no timed
        checkpoint (every 5 min by default) falls into a run; autovacuum is off for the
        table, which each run refills from empty (both sides insert into it alike).
        """
        url = plain_url(self._bench.settings.database_url)
        table = f'"{self._schema}".usage_events'
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {table}")
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            conn.execute("CHECKPOINT")

    def _check_stored(self, expected: int, who: str) -> None:
        """Checks that the run stored every event it was credited with (no silent duplicates).

        Raises:
            RuntimeError: The table holds another number of rows.
        """
        url = plain_url(self._bench.settings.database_url)
        with psycopg.connect(url, autocommit=True) as conn:
            (stored,) = conn.execute(f'SELECT count(*) FROM "{self._schema}".usage_events').fetchone() or (0,)
        if stored != expected:
            raise RuntimeError(f"{who} was credited with {expected} events but stored {stored}")

    def _service_run(self) -> Sample:
        settings = self._bench.settings
        self._truncate()
        billing = self._mesh.pids["billing"]
        plan = self._mesh.plan(
            "billing",
            INGEST,
            None,
            identity="agent",
            token=False,
            concurrency=settings.ingest_concurrency,
            requests_file=str(self._requests),
            warmup_count=self._warmup_batches,
            seconds=settings.seconds,
        )
        with self._mesh.database_work_elsewhere(), measured(billing):
            result = run_plan(plan)
        self._check_stored((self._warmup_batches + result.calls) * settings.ingest_batch, "IngestUsageEvents")
        sample = sample_of(result, billing)
        return Sample(**{**asdict(sample), "rate": sample.rate * settings.ingest_batch})

    def _raw_run(self) -> Sample:
        settings = self._bench.settings
        self._truncate()
        plan = RawPlan(
            dsn=self._app_dsn,
            schema=self._schema,
            batch=settings.ingest_batch,
            supply_batches=SUPPLY_BATCHES,
            warmup_batches=self._warmup_batches,
            concurrency=settings.ingest_concurrency,
            seconds=settings.seconds,
        )
        argv = pinned([sys.executable, "-m", "benchmark.ingest"], MEASURED_CORE)
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as client:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write(json.dumps(asdict(plan)) + "\n")
            client.stdin.flush()
            if client.stdout.readline().strip() != "connected":
                raise RuntimeError("the raw psycopg client failed to connect")
            pinner = self._mesh.pinner
            assert pinner is not None
            pinner.watch([client.pid])
            with self._mesh.database_work_elsewhere():
                client.stdin.write("go\n")
                client.stdin.flush()
                answer = client.stdout.read()
        if client.returncode != 0:
            raise RuntimeError(f"the raw psycopg client failed with code {client.returncode}")
        result = json.loads(answer)
        self._check_stored(int(result["stored"]), "the raw psycopg client")
        return Sample(
            rate=result["rate"],
            target_cpu=result["cpu"],
            loadgen_cpu=float("nan"),
            other_core_busy=result["core_busy"],
            measured_core_busy=result["measured_core_busy"],
        )

    def throughputs(self) -> Sequence[Throughput]:
        """Returns the baseline and the service."""
        return [self.raw, self.service]

    def rows(self) -> Sequence[Row]:
        """Returns the ingestion goal row and the baseline's own row (its CPU shares)."""
        batch = self._bench.settings.ingest_batch
        raw, service = self.raw.median, self.service.median
        goal = Goal(">= 0.60 & 20k/s", min_ratio=0.60, min_value=20_000)
        return [
            Row(f"IngestUsageEvents ×{batch} ÷ raw executemany, PG (ratio per round)", service.rate, "ev/s",
                raw.rate, goal, service, paired=paired_ratio(self.service, self.raw)),
            Row(f"raw executemany ×{batch}, PG (target = client)", raw.rate, "ev/s", sample=raw),
        ]  # fmt: skip


def main() -> None:
    """The raw client: reads a :class:`RawPlan` line, connects, waits for ``go``, prints its result."""
    plan = RawPlan(**json.loads(sys.stdin.readline()))
    print(json.dumps(asyncio.run(_raw(plan))))


if __name__ == "__main__":
    main()
