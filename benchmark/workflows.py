"""What the workflow engine costs per step, against the DBOS library alone running empty steps.

Each side runs in a process of its own pinned to the measured core (DBOS is one
instance per process), on SQLite and on PostgreSQL:

* Orchestrall: the five services in that process (no model server: the steps
  call no agent), a workflow of :data:`STEPS` steps in a line, each an empty
  step (a ``wait`` of 0 s: scheduled as its own DBOS workflow, its events
  appended, its end waited for). The latency of an empty step is a run's time
  (its ``create_time`` to its ``end_time``, the service's own clock) divided by
  :data:`STEPS`, median over :data:`LATENCY_RUNS` runs; steps/s is
  :data:`PARALLEL` runs started together, their steps over the time from the
  first start to the last end.
* DBOS alone: a DBOS workflow calling :data:`STEPS` empty ``@DBOS.step``
  functions in a line, timed from its start to its result in the same way.

Usage (what :class:`WorkflowSteps` runs): ``python -m benchmark.workflows
{orchestrall,dbos} STATE_DIR [DATABASE_URL]`` prints one JSON line,
``{"step_ms": ..., "steps_per_second": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmark.harness import MEASURED_CORE, Goal, Row, Throughput, pinned
from benchmark.inprocess import channel, tenant_metadata, workload_certificates
from benchmark.mesh import Bench, drop_schemas

STEPS = 10
LATENCY_RUNS = 9
PARALLEL = 10
SCHEMA_PREFIX = "bench_wf_"


async def _orchestrall(state: Path, database_url: str | None) -> dict[str, float]:
    # Imported here: the services' modules register their DBOS workflows on import, and the
    # process that measures DBOS alone must not load them.
    from google.protobuf import duration_pb2

    from orchestrall.workflow.v1 import resources_pb2 as res
    from orchestrall.workflow.v1 import workflow_service_pb2 as pb
    from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
    from services.cli.inprocess import start_services
    from services.cli.stack import StackConfig

    tls_dir = state / "tls"
    workload_certificates(tls_dir)
    config = StackConfig.ephemeral(
        state / "stack", database_url=database_url, schema_prefix=SCHEMA_PREFIX if database_url else ""
    )
    servers = await start_services(
        config, tls_dir, "http://127.0.0.1:9/v1", audit_relay_interval_seconds=3600
    )
    try:
        metadata = await tenant_metadata(servers, tls_dir, "steps")
        empty = res.Workflow.Wait(duration=duration_pb2.Duration())
        steps = [
            res.Workflow.Step(id=f"s{i}", depends_on=[f"s{i - 1}"] if i else [], wait=empty)
            for i in range(STEPS)
        ]
        async with channel(servers, tls_dir, "workflow") as workflow_channel:
            stub = pb_grpc.WorkflowServiceStub(workflow_channel)
            workflow = await stub.CreateWorkflow(
                pb.CreateWorkflowRequest(
                    parent="tenants/steps", workflow_id="empty", workflow=res.Workflow(steps=steps)
                ),
                metadata=metadata,
            )

            async def one() -> tuple[float, float]:
                run = await stub.CreateWorkflowRun(
                    pb.CreateWorkflowRunRequest(
                        parent=workflow.name, workflow_run=res.WorkflowRun(input="x")
                    ),
                    metadata=metadata,
                )
                while run.state != res.RUN_STATE_SUCCEEDED:
                    assert run.state in (res.RUN_STATE_PENDING, res.RUN_STATE_RUNNING), run.error
                    await asyncio.sleep(0.05)  # the figures are the service's own timestamps
                    run = await stub.GetWorkflowRun(
                        pb.GetWorkflowRunRequest(name=run.name), metadata=metadata
                    )
                return run.create_time.ToDatetime().timestamp(), run.end_time.ToDatetime().timestamp()

            for _ in range(2):  # warm: stubs, tokens, caches
                await one()
            latencies = [(end - start) / STEPS for start, end in [await one() for _ in range(LATENCY_RUNS)]]
            spans = await asyncio.gather(*(one() for _ in range(PARALLEL)))
            elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    finally:
        for server in reversed(servers.values()):
            await server.stop(0)
    return {"step_ms": statistics.median(latencies) * 1000, "steps_per_second": PARALLEL * STEPS / elapsed}


async def _dbos_alone(state: Path, database_url: str | None) -> dict[str, float]:
    from dbos import DBOS, DBOSConfig

    @DBOS.step(name="bench.empty_step")
    async def empty_step() -> None:
        return None

    @DBOS.workflow(name="bench.empty_steps")
    async def empty_steps(count: int) -> None:
        for _ in range(count):
            await empty_step()

    config: DBOSConfig = {"name": "bench-dbos-alone", "log_level": "WARNING"}
    if database_url:
        config["system_database_url"] = database_url
        config["dbos_system_schema"] = f"{SCHEMA_PREFIX}alone_dbos"
    else:
        config["system_database_url"] = f"sqlite:///{state / 'dbos.db'}"
    DBOS(config=config)
    DBOS.launch()
    try:

        async def one() -> tuple[float, float]:
            began = time.time()
            handle = await DBOS.start_workflow_async(empty_steps, STEPS)
            await handle.get_result()
            return began, time.time()

        for _ in range(2):
            await one()
        latencies = [(end - start) / STEPS for start, end in [await one() for _ in range(LATENCY_RUNS)]]
        spans = await asyncio.gather(*(one() for _ in range(PARALLEL)))
        elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=0)
    return {"step_ms": statistics.median(latencies) * 1000, "steps_per_second": PARALLEL * STEPS / elapsed}


def _measure(side: str, database_url: str | None) -> dict[str, float]:
    """Runs one side in a fresh process on the measured core; returns its figures."""
    with tempfile.TemporaryDirectory(prefix="orchestrall-bench-wf-") as tmp:
        argv = [
            sys.executable,
            "-m",
            "benchmark.workflows",
            side,
            tmp,
            *([database_url] if database_url else []),
        ]
        if database_url:
            drop_schemas(database_url, SCHEMA_PREFIX)
        try:
            done = subprocess.run(pinned(argv, MEASURED_CORE), capture_output=True, text=True, check=False)
        finally:
            if database_url:
                drop_schemas(database_url, SCHEMA_PREFIX)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark.workflows {side} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


class WorkflowSteps:
    """An empty step's latency and steps/s with runs in parallel, against DBOS alone, on both databases.

    Args:
        bench: The benchmark's settings (its PostgreSQL URL); its stacks are not used.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def throughputs(self) -> Sequence[Throughput]:
        """Returns nothing: these figures are made in :meth:`rows`."""
        return []

    def rows(self) -> Sequence[Row]:
        """Measures both sides on SQLite and PostgreSQL, one fresh process each."""
        rows = []
        for label, url in (("SQLite", None), ("PostgreSQL", self._bench.settings.database_url)):
            ours, alone = _measure("orchestrall", url), _measure("dbos", url)
            rows.append(
                Row(
                    f"workflow steps/s, {PARALLEL} runs in parallel, ÷ DBOS alone, {label}",
                    ours["steps_per_second"],
                    "/s",
                    baseline=alone["steps_per_second"],
                    goal=Goal(">= 0.8", min_ratio=0.8),
                )
            )
            rows.append(
                Row(
                    f"empty workflow step latency (DBOS alone {alone['step_ms']:.2f} ms), {label}",
                    ours["step_ms"],
                    "ms",
                    shown=f"{ours['step_ms']:.1f} ms",
                )
            )
        return rows


def main() -> None:
    """``python -m benchmark.workflows SIDE STATE_DIR [DATABASE_URL]``: prints the side's figures as JSON."""
    side, state = sys.argv[1], Path(sys.argv[2])
    database_url = sys.argv[3] if len(sys.argv) > 3 else None
    measure = _orchestrall if side == "orchestrall" else _dbos_alone
    print(json.dumps(asyncio.run(measure(state, database_url))))


if __name__ == "__main__":
    main()
