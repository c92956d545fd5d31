"""One REST request is one trace across every hop, with metrics and logs that name it.

A stack of its own writes every span to a file (``orchestrall up --traces FILE``: an OTLP/gRPC
receiver in the stack's process, :mod:`services.cli.traces`, which the gateway and the services
export to as to a collector). The request carries a W3C ``traceparent``; the gateway, the agent
service, the peer it calls (billing) and the model call must all report spans of that
trace. The flag service is no hop of a run: the agent evaluates its flags in process, from
the flag service's sync stream (services/agent/flags.py). The same run shows in the agent's
metrics (model tokens and latency by model, the run's outcome), a workflow run in the
workflow service's, and Envoy serves its own stats on the stats listener only.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.cli.stack import Stack, telemetry_summary
from tests.conftest import Backend
from tests.mesh.conftest import auth, own_stack, run_to_end
from tests.mesh.test_access_gateway import sign_up

#: On SQLite: traces and metrics do not depend on the store, and its stack starts in a third of the time.
pytestmark = [pytest.mark.mesh, pytest.mark.backends("sqlite")]
HOPS = {"orchestrall-gateway", "orchestrall-agent", "orchestrall-billing"}
#: Text only the prompt holds: no span, attribute or log line may carry it.
PROMPT_MARKER = f"marker-{secrets.token_hex(4)}"
#: ``Span.kind`` SPAN_KIND_SERVER in OTLP's JSON encoding (enums as integers).
SERVER = 2


def _value(value: dict[str, object]) -> object:
    """An OTLP JSON ``AnyValue``: int64 values come as decimal strings."""
    for kind, inner in value.items():
        return int(str(inner)) if kind == "intValue" else inner
    return None


@dataclass
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    attributes: dict[str, object]
    #: The span's events: name and attributes of each.
    events: list[tuple[str, dict[str, object]]]


def spans_in(path: Path) -> list[Span]:
    """Every span in an OTLP JSON lines file (a line still being written is left for later)."""
    text = path.read_text() if path.exists() else ""
    spans = []
    for line in text[: text.rfind("\n") + 1].splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            resource = {a["key"]: _value(a["value"]) for a in resource_spans["resource"]["attributes"]}
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    attributes = {a["key"]: _value(a["value"]) for a in span.get("attributes", [])}
                    spans.append(
                        Span(
                            str(resource["service.name"]),
                            span["name"],
                            span["kind"],
                            span["traceId"],
                            attributes,
                            [
                                (e["name"], {a["key"]: _value(a["value"]) for a in e.get("attributes", [])})
                                for e in span.get("events", [])
                            ],
                        )
                    )
    return spans


@dataclass
class Traced:
    stack: Stack
    http: httpx.Client

    def of_trace(self, trace_id: str) -> list[Span]:
        assert self.stack.config.traces_file is not None
        return [s for s in spans_in(self.stack.config.traces_file) if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, stack: Stack, backend: Backend) -> Iterator[Traced]:
    variables = {
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "ORCHESTRALL_GATEWAY_TRACE_SAMPLING": "100",  # every request, so this one is traced
    }
    traces = tmp_path_factory.mktemp(f"traces-{backend.name}") / "traces.jsonl"
    with (
        own_stack(tmp_path_factory, stack, backend, "traced", variables, traces_file=traces) as running,
        httpx.Client(base_url=running.config.gateway_url, timeout=120) as http,
    ):
        yield Traced(running, http)


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
    while {s.service for s in traced.of_trace(trace_id)} < HOPS or not _model_spans(traced, trace_id):
        assert time.monotonic() < deadline, (
            f"services seen: {sorted({s.service for s in traced.of_trace(trace_id)})}"
        )
        time.sleep(0.1)
    spans = traced.of_trace(trace_id)

    agent_server = [s for s in spans if s.service == "orchestrall-agent" and s.kind == SERVER]
    assert [s.name for s in agent_server] == ["/orchestrall.agent.v1.AgentService/CreateRun"]
    assert agent_server[0].attributes["tenant.id"] == owner.tenant
    (model,) = _model_spans(traced, trace_id)
    assert model.attributes["gen_ai.operation.name"] == "chat"
    assert isinstance(model.attributes["gen_ai.usage.output_tokens"], int)
    assert all(PROMPT_MARKER not in json.dumps(s.attributes, default=str) for s in spans)
    # The flags the run read from the agent's in-process provider (no flag RPC per run), as
    # OpenTelemetry's feature_flag.evaluation events in the agent's spans.
    flags = {
        str(attributes["feature_flag.key"]): attributes
        for s in spans
        if s.service == "orchestrall-agent"
        for name, attributes in s.events
        if name == "feature_flag.evaluation"
    }
    assert not [name for s in spans for name, _ in s.events if name == "exception"]
    tools = flags[f"{owner.tenant}/agent-tools"]  # the all-tenant sync keys flags <tenant>/<flag>
    assert tools["feature_flag.context.id"] == f"tenants/{owner.tenant}/agents/a"
    assert tools["feature_flag.provider.name"] == "FlagdProvider"
    dialect = "sqlite" if traced.stack.config.database_url is None else "postgresql"
    transactions = [s.name for s in spans if s.attributes.get("db.system.name") == dialect]
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
    return [s for s in traced.of_trace(trace_id) if s.name.startswith("chat ")]


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


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(url: str) -> Series:
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def _total(series: Series, name: str, **labels: str) -> float:
    return sum(v for (n, found), v in series.items() if n == name and set(labels.items()) <= found)


def test_model_calls_and_run_outcomes_show_in_the_metrics(traced: Traced) -> None:
    owner = sign_up(traced.http, "metered")
    t, headers = f"tenants/{owner.tenant}", auth(owner.token)
    agent = {"instructions": "Answer in one word.", "maxOutputTokens": 8, "temperature": 0}
    created = traced.http.post(f"/v1/{t}/agents", params={"agentId": "m"}, json=agent, headers=headers)
    assert created.status_code == 200, created.text
    steps = [{"id": "note", "notification": {"channel": "ops", "messageTemplate": "hello"}}]
    workflow = traced.http.post(
        f"/v1/{t}/workflows", params={"workflowId": "w"}, json={"steps": steps}, headers=headers
    )
    assert workflow.status_code == 200, workflow.text
    urls = traced.stack.config.metrics_urls()
    agent_before, workflow_before = _scrape(urls["agent"]), _scrape(urls["workflow"])

    run = run_to_end(traced.http, f"{t}/agents/m", {"input": "Say hi."}, headers)
    assert run["state"] == "STATE_SUCCEEDED", run
    started = traced.http.post(f"/v1/{workflow.json()['name']}/runs", json={"input": "x"}, headers=headers)
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + 60
    while (body := traced.http.get(f"/v1/{started.json()['name']}", headers=headers).json())["state"] in (
        "RUN_STATE_PENDING",
        "RUN_STATE_RUNNING",
    ):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body["state"] == "RUN_STATE_SUCCEEDED", body
    agent_after, workflow_after = _scrape(urls["agent"]), _scrape(urls["workflow"])

    def grew(name: str, **labels: str) -> float:
        return _total(agent_after, name, **labels) - _total(agent_before, name, **labels)

    call = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_response_model": run["model"],
    }
    usage = run["usage"]
    for kind, tokens in (("input", usage.get("inputTokens", 0)), ("output", usage.get("outputTokens", 0))):
        assert grew("gen_ai_client_token_usage_count", gen_ai_token_type=kind, **call) == 1
        assert grew("gen_ai_client_token_usage_sum", gen_ai_token_type=kind, **call) == int(tokens)
    assert grew("gen_ai_client_operation_duration_seconds_count", error_type="", **call) == 1
    assert 0 < grew("gen_ai_client_operation_duration_seconds_sum", **call) < 120
    assert grew("orchestrall_agent_runs_ended_total", state="succeeded") == 1
    assert grew("orchestrall_agent_runs_ended_total", state="failed") == 0
    ended = "orchestrall_workflow_runs_ended_total"
    assert (
        _total(workflow_after, ended, state="succeeded") - _total(workflow_before, ended, state="succeeded")
        == 1
    )
    # The database pools of both, as the dashboard reads them.
    assert _total(agent_after, "db_client_connection_count", rpc_service="agent") >= 1


def test_envoy_serves_its_stats_on_the_stats_listener_only(traced: Traced) -> None:
    url = traced.stack.config.metrics_urls()["gateway"]
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(answer.text)}
    assert "envoy_http_downstream_rq" in families and "envoy_cluster_upstream_rq" in families
    base = url.removesuffix("/stats/prometheus")
    for path in ("/stats", "/config_dump", "/certs", "/ready", "/"):
        assert httpx.get(base + path, timeout=5).status_code == 404, path
    assert httpx.post(base + "/quitquitquit", timeout=5).status_code == 404
    assert httpx.post(url, timeout=5).status_code == 404
    # Readiness is on the gateway's own listener.
    ready = traced.http.get("/ready")
    assert ready.status_code == 200 and ready.text.strip() == "LIVE"


def test_up_prints_where_metrics_and_traces_are(traced: Traced) -> None:
    summary = telemetry_summary(traced.stack)
    urls = traced.stack.config.metrics_urls()
    assert set(urls) == {"auth", "agent", "workflow", "flag", "billing", "gateway"}
    for name, url in urls.items():
        assert f"{name:<9} {url}" in summary
        assert httpx.get(url, timeout=5).status_code == 200, url
    assert f"traces   {traced.stack.config.traces_file} (OTLP JSON" in summary
