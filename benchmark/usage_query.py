"""``QueryUsage`` latency: a month of daily windows grouped by model over 1,000,000 events, PostgreSQL.

The five services run in this process (:func:`services.cli.inprocess.start_services`,
as :mod:`benchmark.createrun` runs them) on PostgreSQL. The benchmark tenant signs up;
then :data:`EVENTS` usage events of the built-in meter ``model_input_tokens`` are loaded
straight into billing's ``usage_events`` with binary ``COPY`` as the schema owner (the
figure is the query's, not the load's; ingestion has its own, :mod:`benchmark.ingest`),
spread evenly over the 30 days of November 2026, each with one of :data:`MODELS` models
and :data:`AGENTS` agents in its ``data`` as the agent service writes them
(:mod:`services.agent.metering`), then ``ANALYZE``. The events' rollups (:mod:`services.billing.rollups`,
the pre-aggregation ingestion keeps with them) are loaded the same way. The figure is
the latency of one ``QueryUsage`` over gRPC with the tenant's token (daily windows of
the month in UTC, grouped by ``model``), :data:`QUERIES` calls back to back after
:data:`WARMUP`; the answer is checked against the events' totals.

Without the rollups (reading every event's ``data``), the same query took p50 3,555 ms,
p99 4,404 ms on the shared 2-core machine (2026-12-01).

Run alone: ``python -m benchmark.usage_query [--database-url URL]``; ``make bench`` runs it
with the other groups.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg.types.json import Jsonb

from benchmark.harness import Goal, Row, Throughput, percentile, render_table
from benchmark.inprocess import channel, tenant_metadata, workload_certificates
from benchmark.mesh import Bench, Settings, drop_schemas, plain_url
from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from services.billing import rollups
from services.cli.inprocess import start_services
from services.cli.stack import StackConfig
from services.kit.db import schema_name

EVENTS = 1_000_000
MODELS = ("smollm2", "gpt-small", "gpt-large", "llama-8b", "llama-70b", "mistral-7b", "qwen-14b", "phi-4")
AGENTS = 20
QUERIES = 40
WARMUP = 3
TENANT = "usage"
METER = "model_input_tokens"
TYPE = f"dev.orchestrall.usage.{METER}"
SCHEMA_PREFIX = "bench_usage_"
_START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
_END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
_COPY = (
    "COPY usage_events (tenant_id, source, event_id, ingest_time, type, subject, time, data, meter, quantity)"
    " FROM STDIN (FORMAT BINARY)"
)
_COPY_ROLLUPS = (
    "COPY usage_rollups (tenant_id, meter, bucket_start, agent, model, principal, quantity, event_count)"
    " FROM STDIN (FORMAT BINARY)"
)
_TYPES = ["text", "text", "text", "timestamptz", "text", "text", "timestamptz", "jsonb", "text", "float8"]


def load(dsn: str, schema: str, count: int) -> float:
    """Copies ``count`` events of the tenant into ``usage_events`` and their rollups, then analyzes both.

    The rollups are what ingestion adds up with the events (:mod:`services.billing.rollups`),
    summed here the same way.

    Returns:
        The seconds the load took.
    """
    started = time.perf_counter()
    step = (_END - _START) / count
    sums: dict[tuple[dt.datetime, str, str], list[float]] = {}
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn:
        with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for i in range(count):
                at = _START + step * i
                agent = f"tenants/{TENANT}/agents/agent-{i % AGENTS}"
                run = f"{agent}/runs/run-{i // 8:07d}"
                quantity, model = 100 + i % 400, MODELS[i % len(MODELS)]
                data = {"quantity": quantity, "model": model, "agent": agent}
                source, event_id = f"//agent.orchestrall.dev/{run}", f"model-call/{i % 8}/{METER}"
                copy.write_row(
                    [TENANT, source, event_id, at, TYPE, run, at, Jsonb(data), METER, float(quantity)]
                )
                found = sums.setdefault((rollups.bucket_of(at), agent, model), [0.0, 0])
                found[0] += quantity
                found[1] += 1
        with conn.cursor() as cursor, cursor.copy(_COPY_ROLLUPS) as copy:
            copy.set_types(["text", "text", "timestamptz", "text", "text", "text", "float8", "int4"])
            for (bucket, agent, model), (total, events) in sums.items():
                copy.write_row([TENANT, METER, bucket, agent, model, "", total, int(events)])
        conn.commit()
        conn.execute("ANALYZE usage_events")
        conn.execute("ANALYZE usage_rollups")
        conn.commit()
    return time.perf_counter() - started


def _stamp(instant: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


async def _latencies(config: StackConfig, tls_dir: Path, dsn: str) -> tuple[list[float], float, int]:
    """Starts the services, loads the events and times the queries; returns seconds per query."""
    servers = await start_services(
        config, tls_dir, "http://127.0.0.1:9/v1", audit_relay_interval_seconds=3600
    )
    try:
        metadata = await tenant_metadata(servers, tls_dir, TENANT)
        billing = config.settings("billing")
        loaded = await asyncio.to_thread(load, dsn, schema_name(billing, "billing"), EVENTS)
        request = pb.QueryUsageRequest(
            name=f"tenants/{TENANT}/meters/{METER}",
            start_time=_stamp(_START),
            end_time=_stamp(_END),
            window_size=pb.QueryUsageRequest.WINDOW_SIZE_DAY,
            group_by=["model"],
        )
        found: list[float] = []
        windows = 0
        async with channel(servers, tls_dir, "billing") as billing_channel:
            stub = pb_grpc.BillingServiceStub(billing_channel)
            for i in range(WARMUP + QUERIES):
                started = time.perf_counter()
                answer = await stub.QueryUsage(request, metadata=metadata, timeout=120)
                elapsed = time.perf_counter() - started
                windows = len(answer.windows)
                if i >= WARMUP:
                    found.append(elapsed)
        total = sum(w.value for w in answer.windows)
        expected = sum(100 + i % 400 for i in range(EVENTS))
        if windows != 30 * len(MODELS) or total != expected:
            raise RuntimeError(
                f"QueryUsage answered {windows} windows summing to {total}; expected {expected}"
            )
        return found, loaded, windows
    finally:
        for server in reversed(servers.values()):
            await server.stop(0)


class UsageQueryLatency:
    """``QueryUsage`` p50/p99 over a month of a million events, on PostgreSQL.

    Args:
        bench: The benchmark's settings (its PostgreSQL URL); its stacks are not used.
    """

    def __init__(self, bench: Bench) -> None:
        self._settings = bench.settings

    def throughputs(self) -> Sequence[Throughput]:
        """Returns nothing: this figure is a latency, measured in :meth:`rows`."""
        return []

    def rows(self) -> Sequence[Row]:
        """Starts an in-process mesh on PostgreSQL, loads the events and times the query."""
        return measure(self._settings.database_url)


def measure(database_url: str) -> list[Row]:
    """Returns the figure's row, measured on the PostgreSQL server of ``database_url`` (admin)."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        tls_dir = state / "tls"
        workload_certificates(tls_dir)
        config = StackConfig.ephemeral(state / "pg", database_url=database_url, schema_prefix=SCHEMA_PREFIX)
        drop_schemas(database_url, SCHEMA_PREFIX)
        try:
            latencies, loaded, windows = asyncio.run(_latencies(config, tls_dir, plain_url(database_url)))
        finally:
            drop_schemas(database_url, SCHEMA_PREFIX)
    print(f"[usage_query] {EVENTS:,} events loaded in {loaded:.1f} s; {windows} windows", file=sys.stderr)
    p50, p99 = percentile(latencies, 0.50) * 1e3, percentile(latencies, 0.99) * 1e3
    return [
        Row(
            f"QueryUsage, 30 days by model, {EVENTS // 1_000_000}M events, PG, {len(latencies)}×",
            p99,
            "ms",
            goal=Goal("p99 < 250 ms", max_value=250),
            shown=f"p50 {p50:.1f}, p99 {p99:.1f} ms",
        )
    ]


def main() -> None:
    """Measures the figure alone and prints its row."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.usage_query", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ORCHESTRALL_TEST_DATABASE_URL", Settings().database_url),
        help="PostgreSQL admin URL (default: $ORCHESTRALL_TEST_DATABASE_URL, or %(default)s)",
    )
    rows = measure(parser.parse_args().database_url)
    print(render_table([("goals", rows)]))


if __name__ == "__main__":
    main()
