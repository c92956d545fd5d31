"""One REST request is one trace across every hop, with metrics and logs that name it.

A stack of its own exports to an OTLP/gRPC collector run by the test (the
collector service of ``opentelemetry-proto``, the wire protocol a real
collector speaks). The request carries a W3C ``traceparent``; the gateway, the
agent service, the two peers it calls (billing, flag) and the model call must
all report spans of that trace.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from services.cli.stack import Stack, StackConfig, free_port
from tests.conftest import SCHEMA_PREFIX, Backend
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh
HOPS = {"orchestrall-gateway", "orchestrall-agent", "orchestrall-billing", "orchestrall-flag"}
#: Text only the prompt holds: no span, attribute or log line may carry it.
PROMPT_MARKER = f"marker-{secrets.token_hex(4)}"


def _value(value: common_pb2.AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class Span:
    service: str
    span: trace_pb2.Span
    attributes: dict[str, object] = field(default_factory=dict)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(  # noqa: N802  (the OTLP service's method name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: _value(a.value) for a in span.attributes}
                        self.spans.append(Span(str(resource.get("service.name")), span, attributes))
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.span.trace_id.hex() == trace_id]


@dataclass
class Traced:
    stack: Stack
    collector: Collector
    http: httpx.Client


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, stack: Stack, backend: Backend) -> Iterator[Traced]:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    variables = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "ORCHESTRALL_GATEWAY_TRACE_SAMPLING": "100",  # every request, so this one is traced
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)  # the stack hands its environment to its children
    config = StackConfig.ephemeral(
        tmp_path_factory.mktemp(f"traced-{backend.name}"),
        database_url=backend.database_url,
        schema_prefix=f"{SCHEMA_PREFIX}traced_",
        openai_base_url=f"http://127.0.0.1:{stack.config.model_port}/v1",
    )
    running = Stack(config, log=lambda _line: None)
    try:
        running.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with httpx.Client(base_url=config.gateway_url, timeout=120) as http:
        yield Traced(running, collector, http)
    running.stop()
    server.stop(grace=None)


def test_one_rest_request_is_one_trace_across_every_hop(traced: Traced) -> None:
    owner = sign_up(traced.http, "traced")
    t, headers = f"/v1/tenants/{owner.tenant}", auth(owner.token)
    agent = {"instructions": "Answer briefly.", "tools": ["tools/route_distance"], "maxOutputTokens": 16}
    assert (
        traced.http.post(f"{t}/agents", params={"agentId": "a"}, json=agent, headers=headers).status_code
        == 200
    )
    trace_id = secrets.token_hex(16)
    parent = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    run = traced.http.post(
        f"{t}/agents/a/runs", json={"input": f"Say hello. {PROMPT_MARKER}"}, headers={**headers, **parent}
    )
    assert run.status_code == 200, run.text
    run_name = run.json()["name"]

    deadline = time.monotonic() + 20
    while {s.service for s in traced.collector.of_trace(trace_id)} < HOPS or not _model_spans(
        traced, trace_id
    ):
        assert time.monotonic() < deadline, (
            f"services seen: {sorted({s.service for s in traced.collector.of_trace(trace_id)})}"
        )
        time.sleep(0.1)
    spans = traced.collector.of_trace(trace_id)

    agent_server = [
        s
        for s in spans
        if s.service == "orchestrall-agent" and s.span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    ]
    assert [s.span.name for s in agent_server] == ["/orchestrall.agent.v1.AgentService/CreateRun"]
    assert agent_server[0].attributes["tenant.id"] == owner.tenant
    (model,) = _model_spans(traced, trace_id)
    assert model.attributes["gen_ai.operation.name"] == "chat"
    assert isinstance(model.attributes["gen_ai.usage.output_tokens"], int)
    assert all(PROMPT_MARKER not in json.dumps(s.attributes, default=str) for s in spans)
    dialect = "sqlite" if traced.stack.config.database_url is None else "postgresql"
    transactions = [s.span.name for s in spans if s.attributes.get("db.system.name") == dialect]
    assert "write start_run" in transactions

    # The same call in the agent's metrics and its JSON log line, with the trace's id.
    metrics = httpx.get(f"http://127.0.0.1:{traced.stack.config.metrics_ports['agent']}/metrics").text
    created = [
        line for line in metrics.splitlines()
        if line.startswith("rpc_server_call_duration_seconds_count")
        and 'rpc_method="/orchestrall.agent.v1.AgentService/CreateRun"' in line
        and 'rpc_grpc_status_code="OK"' in line
    ]  # fmt: skip
    assert len(created) == 1 and float(created[0].rsplit(" ", 1)[1]) == 1.0
    logged = _rpc_log_line(traced, trace_id)
    assert logged["rpc.method"] == "/orchestrall.agent.v1.AgentService/CreateRun"
    assert logged["rpc.grpc.status_code"] == "OK" and logged["tenant.id"] == owner.tenant
    assert PROMPT_MARKER not in _agent_log(traced)
    assert run_name.startswith(f"tenants/{owner.tenant}/agents/a/runs/")


def _model_spans(traced: Traced, trace_id: str) -> list[Span]:
    return [s for s in traced.collector.of_trace(trace_id) if s.span.name.startswith("chat ")]


def _rpc_log_line(traced: Traced, trace_id: str) -> dict[str, object]:
    """The agent's RPC log line of the trace, once its buffer is written out (within a second)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in _agent_log(traced).splitlines() if line.startswith("{")]
        found = [
            line for line in lines if line.get("trace_id") == trace_id and line["logger"] == "orchestrall.rpc"
        ]
        if found or time.monotonic() > deadline:
            (line,) = found
            return line
        time.sleep(0.05)


def _agent_log(traced: Traced) -> str:
    return (traced.stack.config.state_dir / "logs" / "agent.log").read_text()
