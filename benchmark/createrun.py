"""What one run costs the mesh: SQL statements per service and peer RPCs, and time over a direct model call.

The five services run in this process (:func:`services.cli.inprocess.start_services`)
on SQLite and on PostgreSQL, with the real model server, so their databases and
guards can be read: each database counts the statements its connections send
per RPC (:meth:`services.kit.db.Database.statements`, ``BEGIN`` and ``COMMIT``
included), each guard the calls it admitted (:attr:`services.kit.interceptors.Guard.calls`).
A run is ``CreateRun`` of an agent with one tool (so the tools flag is
evaluated, in memory: no peer RPC) on a one-line question, waited for with ``WaitRun``; the figure is the
median over the runs of statements sent for the ``CreateRun`` itself (its background
execution included: it runs under the RPC's context) and for the peer RPCs it made,
and of those peer RPCs. ``WaitRun`` and background work (the audit relay, the flag
replicas' change poll) are counted apart. The one peer call before a run starts is
the quota hold; the tools flag and the tenant's model route flag are read from the
agent's in-process flagd provider (:mod:`services.agent.flags`).

Time, on SQLite: the same question to an agent without tools (16 tokens, temperature
0, so the model writes the same reply both ways) streamed through ``CreateRun`` +
``StreamRunEvents``, against the same messages streamed straight from the model
server with the ``openai`` client, alternating; the overhead is the difference of the
two end-to-end times (paired, median). The first streamed event's delay is the time
from the moment the agent service received the model's first token (the event's
``create_time``) to the moment the client read it. Cancel latency is the time of a
``CancelRun`` of a run whose model is streaming, until it returns the run cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import openai

from benchmark.harness import Goal, Row, Throughput
from benchmark.inprocess import channel, tenant_metadata, workload_certificates
from benchmark.mesh import Bench, drop_schemas
from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from services.cli.inprocess import start_services
from services.cli.stack import StackConfig, free_port, model_server_argv
from services.kit.config import SERVICES
from services.kit.server import RunningServer

CREATE_RUN = "/orchestrall.agent.v1.AgentService/CreateRun"
WAIT_RUN = "/orchestrall.agent.v1.AgentService/WaitRun"
LATENCY_RUNS = 7
BRIEF = "Answer in one short sentence."
QUESTION = "How far is Rotterdam from Hamburg?"
#: The mesh infrastructure calls that are not a run's: audit delivery and key fetches.
INFRASTRUCTURE = frozenset(
    {"/orchestrall.auth.v1.AuthService/IngestAuditEvents", "/orchestrall.auth.v1.AuthService/GetJwks"}
)
RUNS = 5
SCHEMA_PREFIX = "bench_runs_"


def _model_server(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(state / "model.log", "wb")  # noqa: SIM115 - the process writes it until stopped
    process = subprocess.Popen(model_server_argv(port), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError("the model server exited")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the model server did not start")
        time.sleep(0.2)


def _snapshot(servers: dict[str, RunningServer]) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Statements by ``service RPC`` and calls by RPC, summed over the services, now."""
    statements: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for name, server in servers.items():
        if server.service.db is not None:
            for rpc, count in server.service.db.statements().items():
                statements[f"{name} {rpc}"] += count
        calls.update(server.guard.calls)
    return statements, calls


async def _count(
    config: StackConfig, tls_dir: Path, model_url: str, measure_time: bool
) -> tuple[int, int, dict[str, int], dict[str, list[float]]]:
    """Median statements and peer RPCs per run, the median statements by service, and the timings."""
    servers = await start_services(config, tls_dir, model_url, audit_relay_interval_seconds=3600)
    try:
        metadata = await tenant_metadata(servers, tls_dir, "runs")
        totals: list[int] = []
        peers: list[int] = []
        by_service: dict[str, list[int]] = collections.defaultdict(list)
        async with channel(servers, tls_dir, "agent") as agent_channel:
            agents = agent_grpc.AgentServiceStub(agent_channel)
            await agents.CreateAgent(
                agent_pb.CreateAgentRequest(
                    parent="tenants/runs",
                    agent_id="router",
                    agent=agent_res.Agent(
                        instructions="Answer in one short sentence.",
                        tools=["tools/route_distance"],
                        max_output_tokens=32,
                        temperature=0,
                    ),
                ),
                metadata=metadata,
            )
            for i in range(RUNS + 1):  # the first warms the caches (tokens, JWKS, stubs)
                before_statements, before_calls = _snapshot(servers)
                run = await agents.CreateRun(
                    agent_pb.CreateRunRequest(
                        parent="tenants/runs/agents/router", run=agent_res.Run(input=QUESTION)
                    ),
                    metadata=metadata,
                    timeout=120,
                )
                await agents.WaitRun(agent_pb.WaitRunRequest(name=run.name), metadata=metadata, timeout=120)
                after_statements, after_calls = _snapshot(servers)
                if i == 0:
                    continue
                statements = after_statements - before_statements
                calls = after_calls - before_calls
                run_rpcs = {rpc for rpc in calls if rpc not in INFRASTRUCTURE and rpc != WAIT_RUN}
                counted = {key: n for key, n in statements.items() if key.split(" ", 1)[1] in run_rpcs}
                totals.append(sum(counted.values()))
                peers.append(sum(n for rpc, n in calls.items() if rpc in run_rpcs and rpc != CREATE_RUN))
                for name in SERVICES:
                    by_service[name].append(
                        sum(n for key, n in counted.items() if key.startswith(f"{name} "))
                    )
            timings = await _timings(agents, metadata, model_url) if measure_time else {}
        return (
            int(statistics.median(totals)),
            int(statistics.median(peers)),
            {name: int(statistics.median(counts)) for name, counts in by_service.items()},
            timings,
        )
    finally:
        for server in reversed(list(servers.values())):
            await server.stop(0)


async def _timings(
    agents: agent_grpc.AgentServiceStub, metadata: Sequence[tuple[str, str]], model_url: str
) -> dict[str, list[float]]:
    """Seconds: run overhead over a direct call, first event's delay, cancel latency (see the module)."""
    direct = openai.AsyncOpenAI(base_url=model_url, api_key="not-needed", max_retries=0)
    for agent_id, agent in (
        ("brief", agent_res.Agent(instructions=BRIEF, max_output_tokens=16, temperature=0)),
        ("teller", agent_res.Agent(instructions="You write long stories.", max_output_tokens=1024)),
    ):
        await agents.CreateAgent(
            agent_pb.CreateAgentRequest(parent="tenants/runs", agent_id=agent_id, agent=agent),
            metadata=metadata,
        )
    timings: dict[str, list[float]] = collections.defaultdict(list)

    async def straight(max_tokens: int) -> float:
        started = time.perf_counter()
        stream = await direct.chat.completions.create(
            model="smollm2",
            messages=[{"role": "system", "content": BRIEF}, {"role": "user", "content": QUESTION}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        async for _chunk in stream:
            pass
        return time.perf_counter() - started

    for i in range(LATENCY_RUNS + 1):  # the first warms up
        story = await agents.CreateRun(
            agent_pb.CreateRunRequest(
                parent="tenants/runs/agents/teller", run=agent_res.Run(input=f"A story, {i}.")
            ),
            metadata=metadata,
        )
        deltas = 0
        events = agents.StreamRunEvents(agent_pb.StreamRunEventsRequest(name=story.name), metadata=metadata)
        async for event in events:
            deltas += event.HasField("text_delta")
            if deltas == 3:
                break
        events.cancel()
        started = time.perf_counter()
        cancelled = await agents.CancelRun(agent_pb.CancelRunRequest(name=story.name), metadata=metadata)
        stopped = time.perf_counter() - started
        assert cancelled.state == agent_res.Run.STATE_CANCELLED, cancelled
        freed = await straight(1) + stopped  # the model server answers again once it stopped the story

        direct_time = await straight(16)
        started = time.perf_counter()
        run = await agents.CreateRun(
            agent_pb.CreateRunRequest(parent="tenants/runs/agents/brief", run=agent_res.Run(input=QUESTION)),
            metadata=metadata,
        )
        first_delay = None
        events = agents.StreamRunEvents(agent_pb.StreamRunEventsRequest(name=run.name), metadata=metadata)
        async for event in events:
            if first_delay is None and event.HasField("text_delta"):
                first_delay = time.time() - event.create_time.ToDatetime(dt.UTC).timestamp()
        through = time.perf_counter() - started
        if i == 0:
            continue
        timings["overhead"].append(through - direct_time)
        timings["cancel"].append(stopped)
        timings["freed"].append(freed)
        if first_delay is not None:
            timings["first event"].append(first_delay)
    await direct.close()
    return timings


def _timing_rows(timings: dict[str, list[float]]) -> list[Row]:
    """The time figures, p50 and p99 in milliseconds (empty for a database they were not measured on)."""
    figures = (
        ("overhead", "run overhead over a direct streamed model call, SQLite (16 tokens, no tools)", 5.0),
        ("first event", "first streamed event after the model's first token", 50.0),
        ("cancel", "CancelRun of a streaming run until it is cancelled", 1000.0),
        ("freed", "CancelRun of a streaming run until the model server answers again", 1000.0),
    )
    rows = []
    for key, figure, goal in figures:
        samples = sorted(timings.get(key, []))
        if not samples:
            continue
        p50 = statistics.median(samples) * 1000
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))] * 1000
        rows.append(
            Row(
                figure,
                p50,
                "ms",
                goal=Goal(f"p50 <= {goal:g}", max_value=goal),
                shown=f"p50 {p50:.1f} / p99 {p99:.1f}",
            )
        )
    return rows


class CreateRunCost:
    """SQL statements and peer RPCs of one ``CreateRun``, on both databases.

    Args:
        bench: The benchmark's settings (its PostgreSQL URL); its stacks are not used.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def throughputs(self) -> Sequence[Throughput]:
        """Returns nothing: these figures are counts, made in :meth:`rows`."""
        return []

    def rows(self) -> Sequence[Row]:
        """Starts an in-process mesh per database with the model server, runs the agent, counts."""
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            tls_dir = state / "tls"
            workload_certificates(tls_dir)
            model, model_url = _model_server(state)
            try:
                for label, url in (("SQLite", None), ("PostgreSQL", self._bench.settings.database_url)):
                    config = StackConfig.ephemeral(
                        state / label, database_url=url, schema_prefix=SCHEMA_PREFIX if url else ""
                    )
                    if url:
                        drop_schemas(url, SCHEMA_PREFIX)
                    try:
                        statements, peers, by_service, timings = asyncio.run(
                            _count(config, tls_dir, model_url, measure_time=url is None)
                        )
                    finally:
                        if url:
                            drop_schemas(url, SCHEMA_PREFIX)
                    shown = ", ".join(f"{name} {n}" for name, n in by_service.items() if n)
                    rows.append(
                        Row(
                            f"SQL statements per CreateRun, {label} ({shown})",
                            statements,
                            "",
                            goal=Goal("<= 15", max_value=15.5),
                        )
                    )
                    rows.append(
                        Row(
                            f"peer RPCs per CreateRun, {label} (the quota hold first; flags in memory)",
                            peers,
                            "",
                        )
                    )
                    rows += _timing_rows(timings)
            finally:
                model.terminate()
                model.wait(10)
        print(f"[createrun] counted over {RUNS} runs each", file=sys.stderr)
        return rows
