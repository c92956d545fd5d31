"""``python -m benchmark`` (what ``make bench`` runs): the performance figures in one table.

Starts three stacks of real processes (SQLite, PostgreSQL, and SQLite with
tracing on; no model server)
and the bare echo server, then measures every throughput figure in interleaved
rounds (``--runs``, 3 by default; the table shows each figure's median run) and
then the latency figures. The measured process runs alone on core 0 for the
length of its run; everything else, the load generators, Envoy and the
PostgreSQL backends serving the benchmark included, runs on core 1. Ratios are
against baselines measured in the same run.

Needs Linux with at least 2 cores, PostgreSQL (``--database-url``; the run
creates schemas named ``bench_*`` and drops them), and wrk (Debian package
``wrk``; ``make bench`` installs it). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from benchmark.createrun import CreateRunCost
from benchmark.flagd import FlagdFigures
from benchmark.flags import FlagPropagation
from benchmark.harness import (
    OTHER_CORE,
    SATURATED,
    Group,
    Row,
    limit_checks,
    machine_facts,
    pin,
    pinned,
    render_table,
    share_text,
)
from benchmark.ingest import IngestFigures
from benchmark.knowledge import KnowledgeFigures
from benchmark.loadgen import wrk_path
from benchmark.mesh import Bench, EchoServer, MeshUnderTest, Settings, drop_schemas
from benchmark.rpc import RpcFigures
from benchmark.telemetry import TracingCost
from benchmark.usage_query import UsageQueryLatency
from benchmark.workflows import WorkflowSteps
from services.cli.stack import free_port

#: The figure groups, in table order. Each takes the :class:`~benchmark.mesh.Bench` and
#: implements :class:`~benchmark.harness.Group`.
GROUPS: list[Callable[[Bench], Group]] = [
    RpcFigures,
    IngestFigures,
    UsageQueryLatency,
    FlagPropagation,
    FlagdFigures.of,
    CreateRunCost,
    TracingCost,
    WorkflowSteps,
    KnowledgeFigures,
    # More figures go here: a module of benchmark/ with a Group class, listed in this list.
]
#: Each group by the name of its module in benchmark/ (what ``--only`` takes).
_GROUP_NAMES = {make.__module__.rsplit(".", 1)[-1]: make for make in GROUPS}


def _arguments() -> Settings:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=defaults.runs, help="runs per throughput figure")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="counted seconds per run")
    parser.add_argument(
        "--warmup", type=float, default=defaults.warmup_seconds, help="uncounted seconds first"
    )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="RPCs in flight")
    parser.add_argument(
        "--flag-changes", type=int, default=defaults.flag_changes, help="flag changes timed (p50, p99)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="MODULE",
        choices=sorted(_GROUP_NAMES),
        help="measure only these figure groups, by module of benchmark/ (default: all)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ORCHESTRALL_TEST_DATABASE_URL", defaults.database_url),
        help="PostgreSQL admin URL (default: $ORCHESTRALL_TEST_DATABASE_URL, as the tests, or %(default)s)",
    )
    args = parser.parse_args()
    return Settings(
        runs=args.runs,
        seconds=args.seconds,
        warmup_seconds=args.warmup,
        concurrency=args.concurrency,
        flag_changes=args.flag_changes,
        database_url=args.database_url,
        only=tuple(args.only or ()),
    )


def _traced_mesh(work: Path, running: ExitStack) -> MeshUnderTest:
    """Starts the SQLite stack's twin that exports traces to an OTLP sink on core 1."""
    port = free_port()
    sink = subprocess.Popen(pinned([sys.executable, "-m", "benchmark.otlp_sink", str(port)], OTHER_CORE))
    running.callback(sink.kill)
    mesh = MeshUnderTest("traced", work / "traced")
    running.callback(mesh.stop)
    variables = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)  # its processes take the environment they start with
    try:
        mesh.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return mesh


def _command() -> str:
    prefix = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    return prefix + shlex.join([sys.executable, "-m", "benchmark", *sys.argv[1:]])


def main() -> None:
    """Runs every figure group and prints the table, the machine facts and the command."""
    settings = _arguments()
    # SIGTERM unwinds like Ctrl-C: the stacks stop and the schemas are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if (os.cpu_count() or 1) < 2:
        sys.exit("the benchmark needs 2 cores: the measured process on core 0, everything else on core 1")
    wrk_path()
    facts = machine_facts()
    began = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - began:5.0f}s] {line}", file=sys.stderr, flush=True)

    pin(os.getpid(), OTHER_CORE)
    drop_schemas(settings.database_url, settings.schema_prefix)
    with tempfile.TemporaryDirectory(prefix="orchestrall-bench-") as tmp, ExitStack() as running:
        work = Path(tmp)
        meshes = []
        for label, url in (("sqlite", None), ("postgres", settings.database_url)):
            mesh = MeshUnderTest(label, work / label, url, f"{settings.schema_prefix}{label}_")
            progress(f"starting the {label} stack")
            running.callback(mesh.stop)
            mesh.start()
            meshes.append(mesh)
        running.callback(drop_schemas, settings.database_url, settings.schema_prefix)
        progress("starting the traced sqlite stack and its OTLP sink")
        traced = _traced_mesh(work, running)
        echo = EchoServer(meshes[0].config.tls_dir)
        running.callback(echo.stop)
        bench = Bench(
            settings=settings, work_dir=work, echo=echo, sqlite=meshes[0], postgres=meshes[1], traced=traced
        )
        chosen = [_GROUP_NAMES[name] for name in settings.only] or GROUPS
        groups = [make(bench) for make in chosen]
        throughputs = [figure for group in groups for figure in group.throughputs()]
        for run in range(1, settings.runs + 1):
            for figure in throughputs:
                sample = figure.measure()
                figure.samples.append(sample)
                shares = "  ".join(
                    f"{label} {share_text(value)}"
                    for label, value in (
                        ("target", sample.target_cpu),
                        ("core 0", sample.measured_core_busy),
                        ("loadgen", sample.loadgen_cpu),
                        ("core 1", sample.other_core_busy),
                    )
                )
                progress(f"run {run}/{settings.runs}  {figure.name:<26} {sample.rate:>10,.0f}/s  {shares}")
        progress("latency figures")
        rows: list[Row] = [row for group in groups for row in group.rows()]
        progress("stopping")
    print()
    print(
        render_table(
            [
                ("goals", [row for row in rows if row.goal is not None]),
                (
                    "context (no goal): what the figures above rest on",
                    [row for row in rows if row.goal is None],
                ),
            ]
        )
    )
    print()
    ingest = f"{settings.ingest_concurrency} batches of {settings.ingest_batch}"
    for note in (
        f"Medians of {settings.runs} interleaved runs of {settings.seconds:g} s (after "
        f"{settings.warmup_seconds:g} s not counted); {settings.concurrency} calls in flight, "
        f"ingestion {ingest} in flight.",
        "ratio = value ÷ baseline, both from this run. direct = gRPC over mTLS straight to the service with "
        "the tenant's token; REST via Envoy = wrk, one thread, keep-alive HTTP/1.1 connections.",
        "CPU columns, shares of one core in the median run: target = the measured process, alone on core 0; "
        "core 0 = all of core 0 (above target: something else ran there); loadgen = the load generator; "
        "core 1 = all of core 1 (load generator, Envoy, PostgreSQL, the machine's other users).",
        "ingest: the table is emptied before each run, so both sides insert fresh rows; the raw baseline's "
        "limit is PostgreSQL itself (its backends on core 1).",
        "flag: from UpdateFlag's reply on replica 1 to the first EvaluateFlag on replica 2 that returns the "
        "new variant (nearest-rank percentiles).",
        "flagd: RPC latencies one call at a time; in-process = OpenFeature client on the flagd in-process "
        "provider vs FlagdCore alone, same document, flags and contexts, alternating rounds on core 0; "
        "flag change -> provider = UpdateFlag's reply to the provider's configuration-changed event.",
    ):
        print(textwrap.fill(note, width=110, subsequent_indent="  "))
    findings = limit_checks(rows)
    if findings:
        for finding in findings:
            print(textwrap.fill(f"check: {finding}", width=110, subsequent_indent="  "))
    else:
        print(
            f"check: in every throughput run shown, the measured process used >= {SATURATED:.0%} of core 0 "
            f"and its load generator < {SATURATED:.0%} of core 1: the measured process was the limit."
        )
    print(
        f"machine: {facts['cpu']}, {facts['cores']} cores, Linux {facts['kernel']}, "
        f"Python {facts['python']}; load average before: {facts['loadavg']}"
    )
    print(f"command: {_command()}   ({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
