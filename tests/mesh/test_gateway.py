"""The whole stack as users reach it: Envoy, the model server and five service processes.

Runs the demo scenario through REST and checks HTTP statuses, stored rows,
tool calls and usage totals; then the error mapping and native gRPC through
the gateway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from typer.testing import CliRunner

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from services.agent.tools import CATALOG, route_distance
from services.cli.__main__ import app as orchestrall_cli
from services.cli.demo import DEMO_TEMPLATES, DemoResult, run_demo
from services.cli.stack import Stack, free_port
from tests.mesh.conftest import auth, grpc_headers, stored_rows

#: Also on SQLite: what this tests is what ``orchestrall up`` does with nothing configured.
pytestmark = [pytest.mark.mesh, pytest.mark.backends("sqlite", "postgres")]


@pytest.fixture(scope="module")
def demo(stack: Stack) -> DemoResult:
    return run_demo(stack.config.gateway_url, echo=lambda _text: None)


def test_demo_runs_the_tool_and_chains_the_workflow(demo: DemoResult) -> None:
    run = demo.run
    assert run["state"] == "STATE_SUCCEEDED" and run["toolsEnabled"]
    assert run["output"], "the model must reply"
    first = run["toolCalls"][0]
    assert first["tool"] == "tools/route_distance"
    assert json.loads(first["result"]) == route_distance(json.loads(first["arguments"]))
    kinds = [next(k for k in e if k not in ("sequence", "createTime")) for e in demo.events]
    assert kinds[0] == "runStarted" and kinds[-1] == "runFinished" and "textDelta" in kinds
    approved = demo.approved_run
    assert approved["state"] == "STATE_SUCCEEDED" and "failed" not in approved["toolCalls"][0]
    states = {s["stepId"]: s["state"].removeprefix("RUN_STATE_") for s in demo.workflow_run["steps"]}
    # The condition takes one branch (the plan's length decides); the other is skipped.
    assert sorted((states["approve"], states["short_plan"])) == ["SKIPPED", "SUCCEEDED"], states
    assert {states[s] for s in ("plan", "long_plan", "report", "notify_ops")} == {"SUCCEEDED"}, states
    by_id = {s["stepId"]: s for s in demo.workflow_run["steps"]}
    plan, report = by_id["plan"], by_id["report"]
    assert json.loads(plan["output"]) in report["input"]
    assert demo.workflow_run["output"] == json.loads(report["output"])


TEMPLATE_TOOLS = {
    "agentTemplates/logistics-route-planner": "tools/route_eta",
    "agentTemplates/finance-compliance-checker": "tools/compliance_check",
}


def test_demo_runs_agents_of_two_industries_templates_with_their_tools(demo: DemoResult) -> None:
    assert list(demo.template_runs) == list(DEMO_TEMPLATES)
    for template, run in demo.template_runs.items():
        call = run["toolCalls"][0]
        assert call["tool"] == TEMPLATE_TOOLS[template] and "failed" not in call, call
        assert json.loads(call["result"]) == CATALOG[call["tool"]].function(json.loads(call["arguments"]))


def test_orchestrall_workflow_show_prints_the_run_its_graph_and_its_history(
    stack: Stack, demo: DemoResult
) -> None:
    shown = CliRunner().invoke(
        orchestrall_cli,
        ["workflow", "show", demo.workflow_run["name"], "--url", stack.config.gateway_url],
        env={"ORCHESTRALL_TOKEN": demo.token, "COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    assert "flowchart TD" in shown.output and "plan -->" in shown.output
    assert "run.succeeded" in shown.output.splitlines()[-1]


def test_demo_rows_and_usage_agree(stack: Stack, demo: DemoResult, http: httpx.Client) -> None:
    tenant = f"tenants/{demo.tenant}"
    rows = stored_rows(
        stack,
        "agent",
        "SELECT agent_id, state, input_tokens, output_tokens, model_calls, tool_calls FROM runs"
        " WHERE tenant_id = :t",
        t=demo.tenant,
    )
    assert sorted(r[0] for r in rows) == [
        "dispatcher",
        "finance-compliance-checker",
        "logistics-route-planner",
        "report-writer",
        "route-planner",
        "route-planner",
    ]
    assert {r[1] for r in rows} == {"SUCCEEDED"}
    listed = http.get(f"/v1/{tenant}/agents/route-planner/runs", headers=auth(demo.token)).json()
    assert len(listed["runs"]) == 2
    meters = {m["meter"]: m["quantity"] for m in demo.usage["meters"]}
    assert meters["agent_runs"] == len(rows) == 6
    assert meters["model_input_tokens"] == sum(r[2] for r in rows)
    assert meters["model_output_tokens"] == sum(r[3] for r in rows)
    # One event per run, per model call (and per token count of it) and per tool call, each once.
    events = dict(
        stored_rows(
            stack,
            "billing",
            "SELECT meter, count(*) FROM usage_events WHERE tenant_id = :t GROUP BY meter",
            t=demo.tenant,
        )
    )
    tool_calls = [json.loads(r[5]) if isinstance(r[5], str) else r[5] for r in rows]
    assert events["agent_runs"] == len(rows)
    assert events["model_calls"] == events["model_input_tokens"] == sum(r[4] for r in rows)
    assert events.get("tool_calls", 0) == sum(len(calls) for calls in tool_calls)


def _reason(body: dict) -> str:
    infos = [d for d in body.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert len(infos) == 1, body
    return infos[0]["reason"]


def test_rest_errors_map_to_http_statuses(demo: DemoResult, http: httpx.Client) -> None:
    tenant = f"tenants/{demo.tenant}"
    assert http.get(f"/v1/{tenant}/agents").status_code == 401

    missing = http.get(f"/v1/{tenant}/agents/nope", headers=auth(demo.token))
    assert missing.status_code == 404
    assert _reason(missing.json()) == "AGENT_NOT_FOUND"
    assert grpc_headers(missing) == []
    assert "Traceback" not in missing.text

    bad_json = http.post(
        f"/v1/{tenant}/agents",
        content=b"{not json",
        headers={**auth(demo.token), "content-type": "application/json"},
    )
    assert bad_json.status_code == 400

    invalid = http.post(f"/v1/{tenant}/agents", json={"tools": ["tools/teleport"]}, headers=auth(demo.token))
    assert invalid.status_code == 400
    body = invalid.json()
    assert _reason(body) == "INVALID_ARGUMENT"
    violations = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")][0][
        "fieldViolations"
    ]
    assert {v["field"] for v in violations} == {"agent.instructions", "agent.tools[0]"}

    other = http.get("/v1/tenants/someone-else/agents", headers=auth(demo.token))
    assert other.status_code == 403
    assert _reason(other.json()) == "TENANT_MISMATCH"


def test_native_grpc_through_the_gateway(stack: Stack, demo: DemoResult) -> None:
    metadata = (("authorization", f"Bearer {demo.token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{stack.config.http_port}") as channel:
        agents = agent_grpc.AgentServiceStub(channel)
        listed = agents.ListAgents(
            agent_pb.ListAgentsRequest(parent=f"tenants/{demo.tenant}"), metadata=metadata
        )
        assert {a.name.rsplit("/", 1)[1] for a in listed.agents} == {
            "route-planner",
            "report-writer",
            "dispatcher",
            "logistics-route-planner",
            "finance-compliance-checker",
        }
        with pytest.raises(grpc.RpcError) as caught:
            agents.GetAgent(
                agent_pb.GetAgentRequest(name=f"tenants/{demo.tenant}/agents/nope"), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        raw = dict(caught.value.trailing_metadata())["grpc-status-details-bin"]
        info = error_details_pb2.ErrorInfo()
        assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
        assert info.reason == "AGENT_NOT_FOUND"
        with pytest.raises(grpc.RpcError) as caught:
            agents.ListTools(agent_pb.ListToolsRequest())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            billing_grpc.BillingServiceStub(channel).CheckEntitlement(
                billing_pb.CheckEntitlementRequest(
                    tenant=f"tenants/{demo.tenant}", meter="agent_runs", quantity=1
                ),
                metadata=metadata,
            )
        assert caught.value.code() != grpc.StatusCode.OK


def test_discovery_is_public(stack: Stack, http: httpx.Client) -> None:
    config = http.get("/.well-known/openid-configuration").json()
    assert config["issuer"] == stack.config.gateway_url
    assert config["jwks_uri"] == f"{stack.config.gateway_url}/.well-known/jwks.json"
    keys = http.get("/.well-known/jwks.json").json()["keys"]
    assert keys and keys[0]["kty"] == "OKP"


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_up_rotates_keys_and_stops_on_sigterm_leaving_no_process(tmp_path: Path) -> None:
    http_port, base = free_port(), free_port()
    env = {**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    command = [
        sys.executable,
        "-m",
        "services.cli",
        "up",
        "--state-dir",
        str(tmp_path),
        "--http-port",
        str(http_port),
    ]
    up = subprocess.Popen(
        [*command, "--service-port-base", str(base)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if "Orchestrall is up" in line:
                break
        else:
            pytest.fail(f"up exited with {up.wait()}")
        children = _children(up.pid)
        assert len(children) == 6, "five services and Envoy"
        assert httpx.get(f"http://127.0.0.1:{http_port}/.well-known/jwks.json").status_code == 200
        rotate = [sys.executable, "-m", "services.cli", "rotate-keys", "--state-dir", str(tmp_path)]
        rotated = subprocess.run(
            [*rotate, "--auth-address", f"127.0.0.1:{base}"], capture_output=True, text=True, timeout=30
        )
        assert rotated.returncode == 0 and "is published" in rotated.stdout, rotated.stdout + rotated.stderr
        keys = httpx.get(f"http://127.0.0.1:{http_port}/.well-known/jwks.json").json()["keys"]
        assert len(keys) == 2, "the new key is published at once, beside the current one"
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
        alive = {pid for pid in children if Path(f"/proc/{pid}").exists()}
        assert alive == set()
    finally:
        up.kill()
