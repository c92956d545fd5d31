"""Unary RPC throughput at a fixed number of calls in flight, against the bare echo.

Every figure is calls per second with ``concurrency`` calls in flight (64 by
default), the measured process alone on core 0:

* the baseline: :mod:`benchmark.echo`, a bare grpc.aio server over the same mTLS,
  echoing the bytes of a ``GetAgentRequest``;
* ``GetAgent`` direct over mTLS (the CLI's client certificate and the tenant's
  token), on SQLite and on PostgreSQL, and ``EvaluateFlag`` on SQLite: each ÷ echo;
* ``GetAgent`` as REST/JSON through Envoy (wrk, 64 connections) ÷ ``GetAgent``
  direct; Envoy shares core 1 with wrk.

Context rows, without goals: ``ListTools`` direct ÷ echo (the kit's server and
interceptors with no database, as the former ``auth_overhead.py`` measured), ``GetAgent`` as
native gRPC through Envoy ÷ direct (as the former ``gateway_overhead.py``), and the
ceilings of both load generators, which show neither limits the figures above.
The same token is sent on every call, so the services' verified-token cache
answers after the first (as for any client that reuses its token).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2

from benchmark.harness import Goal, Row, Sample, Throughput, median
from benchmark.loadgen import Plan, run_plan, run_wrk, sample_of
from benchmark.mesh import AGENT, FLAG, Bench, MeshUnderTest, measured
from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb

GET_AGENT = "/orchestrall.agent.v1.AgentService/GetAgent"
LIST_TOOLS = "/orchestrall.agent.v1.AgentService/ListTools"
EVALUATE_FLAG = "/orchestrall.flag.v1.FlagService/EvaluateFlag"


class RpcFigures:
    """The unary RPC figures and their context rows.

    Args:
        bench: The running stacks and the echo.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        settings = bench.settings
        self._timing: dict[str, Any] = {
            "concurrency": settings.concurrency,
            "seconds": settings.seconds,
            "warmup_seconds": settings.warmup_seconds,
        }
        get_agent = agent_pb.GetAgentRequest(name=AGENT).SerializeToString()
        context = struct_pb2.Struct()
        context.update({"targetingKey": "user-1"})
        evaluate = flag_pb.EvaluateFlagRequest(name=FLAG, context=context).SerializeToString()
        list_tools = agent_pb.ListToolsRequest().SerializeToString()
        sqlite, postgres = bench.sqlite, bench.postgres
        self.echo = Throughput(
            "echo", lambda: self._grpc(bench.echo.plan(get_agent, **self._timing), bench.echo.pid)
        )
        self.get_sqlite = Throughput(
            "GetAgent, SQLite", lambda: self._direct(sqlite, "agent", GET_AGENT, get_agent)
        )
        self.get_postgres = Throughput(
            "GetAgent, PostgreSQL", lambda: self._direct(postgres, "agent", GET_AGENT, get_agent)
        )
        self.evaluate = Throughput(
            "EvaluateFlag", lambda: self._direct(sqlite, "flag", EVALUATE_FLAG, evaluate)
        )
        self.rest = Throughput(
            "GetAgent REST via Envoy", lambda: self._rest(sqlite, f"/v1/{AGENT}", token=True)
        )
        self.list_tools = Throughput(
            "ListTools", lambda: self._direct(sqlite, "agent", LIST_TOOLS, list_tools)
        )
        self.via_envoy = Throughput("GetAgent gRPC via Envoy", lambda: self._via_envoy(sqlite, get_agent))
        self.wrk_ceiling = Throughput("wrk ceiling", lambda: self._rest(sqlite, f"/v1/{AGENT}", token=False))

    def _grpc(self, plan: Plan, pid: int) -> Sample:
        with measured(pid):
            return sample_of(run_plan(plan), pid)

    def _direct(self, mesh: MeshUnderTest, service: str, method: str, request: bytes) -> Sample:
        with mesh.database_work_elsewhere():
            return self._grpc(mesh.plan(service, method, request, **self._timing), mesh.pids[service])

    def _via_envoy(self, mesh: MeshUnderTest, request: bytes) -> Sample:
        plan = Plan(
            target=f"127.0.0.1:{mesh.config.http_port}",
            method=GET_AGENT,
            tls=None,
            metadata=mesh.metadata,
            request=request.hex(),
            watch_pids=[mesh.pids["agent"]],
            **self._timing,
        )
        return self._grpc(plan, mesh.pids["agent"])

    def _rest(self, mesh: MeshUnderTest, path: str, *, token: bool) -> Sample:
        return rest_sample(self._bench, mesh, path, token=token)

    def throughputs(self) -> Sequence[Throughput]:
        """Returns every figure of this module, the baseline first."""
        return [
            self.echo,
            self.get_sqlite,
            self.get_postgres,
            self.evaluate,
            self.rest,
            self.list_tools,
            self.via_envoy,
            self.wrk_ceiling,
        ]

    def rows(self) -> Sequence[Row]:
        """Returns the goal rows, then the context rows."""
        echo = self.echo.median
        direct = self.get_sqlite.median
        ratio = Goal(">= 0.45", min_ratio=0.45)
        n = self._bench.settings.concurrency
        # What the generator could do with all of core 1: its calls/s over its share of core 1,
        # in the echo runs (where it works hardest), as the median over the runs.
        grpc_ceiling = median([s.rate / s.loadgen_cpu for s in self.echo.samples])
        return [
            Row(f"bare grpc.aio echo, mTLS, {n} in flight", echo.rate, "/s", goal=Goal("(baseline)"),
                sample=echo),
            Row("GetAgent direct gRPC ÷ echo, SQLite", direct.rate, "/s", echo.rate, ratio, direct),
            Row("GetAgent direct gRPC ÷ echo, PostgreSQL", self.get_postgres.median.rate, "/s", echo.rate,
                ratio, self.get_postgres.median),
            Row("EvaluateFlag direct gRPC ÷ echo, SQLite", self.evaluate.median.rate, "/s", echo.rate,
                Goal(">= 0.75", min_ratio=0.75), self.evaluate.median),
            Row("GetAgent REST via Envoy ÷ direct, SQLite", self.rest.median.rate, "/s", direct.rate,
                Goal(">= 0.90", min_ratio=0.90), self.rest.median),
            Row("ListTools direct ÷ echo (kit server, no DB)", self.list_tools.median.rate, "/s", echo.rate,
                sample=self.list_tools.median),
            Row("GetAgent gRPC via Envoy ÷ direct, SQLite", self.via_envoy.median.rate, "/s", direct.rate,
                sample=self.via_envoy.median),
            Row("gRPC load gen ceiling, est.: echo rate ÷ its CPU", grpc_ceiling, "/s"),
            Row("REST load gen ceiling (wrk -> Envoy's 401)", self.wrk_ceiling.median.rate, "/s",
                sample=self.wrk_ceiling.median),
        ]  # fmt: skip


def rest_sample(bench: Bench, mesh: MeshUnderTest, path: str, *, token: bool) -> Sample:
    """One wrk run of GET ``path`` through ``mesh``'s Envoy, the agent process measured.

    Without the token Envoy answers 401 itself (the ceiling run).
    """
    settings = bench.settings
    agent = mesh.pids["agent"]
    with measured(agent):
        return run_wrk(
            f"{mesh.config.gateway_url}{path}",
            {"authorization": mesh.metadata[0][1]} if token else {},
            connections=settings.concurrency,
            seconds=settings.seconds,
            warmup_seconds=settings.warmup_seconds,
            target_pid=agent if token else None,
            refused_ok=not token,
        )
