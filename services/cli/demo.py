"""The main job, through REST on the gateway, as a new user would do it.

Each step prints its request and response. :func:`run_demo` returns the
values a test wants to check; any non-2xx answer or failed run raises
:class:`DemoFailed`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

PLANNER_INSTRUCTIONS = (
    "You are a logistics route planner. Use the route_distance tool to get the road distance and drive time, "
    "then answer in one sentence with the distance in km and the drive time in hours."
)
WRITER_INSTRUCTIONS = "You write short, friendly customer updates (two sentences) from route facts."
#: Agent templates of two industries the demo makes agents of and runs.
DEMO_TEMPLATES = ("agentTemplates/logistics-route-planner", "agentTemplates/finance-compliance-checker")


class DemoFailed(Exception):
    """A demo step got an unexpected answer."""


@dataclass
class DemoResult:
    """What the demo created and observed."""

    tenant: str = ""
    token: str = ""
    run: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    approved_run: dict[str, Any] = field(default_factory=dict)
    workflow_run: dict[str, Any] = field(default_factory=dict)
    template_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)


class Client:
    """A tiny REST client that prints every exchange.

    Args:
        base_url: The gateway URL.
        echo: Prints one block of text.
    """

    def __init__(self, base_url: str, echo: Callable[[str], None]) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=300)
        self._echo = echo
        self.token = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, quiet: bool = False) -> Any:
        """Sends one request; returns the JSON answer.

        Raises:
            DemoFailed: The status is not 2xx.
        """
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        response = self._http.request(method, path, json=body, headers=headers)
        if not quiet:
            self._echo(f"\n$ {method} {path}" + (f"\n{json.dumps(body, indent=2)}" if body else ""))
            self._echo(f"-> {response.status_code}\n{_pretty(response)}")
        if not response.is_success:
            raise DemoFailed(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else {}

    def stream(self, path: str) -> Iterator[dict[str, Any]]:
        """Opens a Server-Sent Events stream; yields the JSON of each event as it arrives.

        Raises:
            DemoFailed: The status is not 2xx.
        """
        headers = {"authorization": f"Bearer {self.token}", "accept": "text/event-stream"}
        self._echo(f"\n$ GET {path}  (Server-Sent Events)")
        with self._http.stream("GET", path, headers=headers) as response:
            if not response.is_success:
                raise DemoFailed(f"GET {path} answered {response.status_code}: {response.read()[:500]!r}")
            yield from server_sent_events(response.iter_lines())


def server_sent_events(lines: Iterable[str]) -> Iterator[Any]:
    """Yields the JSON of each event of a ``text/event-stream`` body, line by line as it arrives.

    An event is the ``data`` lines before a blank line, joined with newlines (the HTML Living
    Standard's event-stream interpretation; the gateway sends only ``data`` fields).
    """
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
    if data:
        yield json.loads("\n".join(data))


def _pretty(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text
    if isinstance(data, dict) and "access_token" in data:
        data = {**data, "access_token": data["access_token"][:24] + "..."}
    if isinstance(data, dict) and "apiKeySecret" in data:
        data = {**data, "apiKeySecret": data["apiKeySecret"][:16] + "... (shown once)"}
    return json.dumps(data, indent=2)


def _describe(event: dict[str, Any]) -> str:
    """One line about a run event."""
    head = f"  [{event.get('sequence')}]"
    if "textDelta" in event:
        return f"{head} text: {event['textDelta']['text']!r}"
    if "toolCallFinished" in event:
        call = event["toolCallFinished"]
        return f"{head} tool call finished: {call['tool']}({call['arguments']}) -> {call.get('result', '')}"
    if "modelCall" in event:
        call = event["modelCall"]
        tokens = call.get("outputTokens", 0)
        return f"{head} model call: {call.get('model')} answered in {call.get('latency')}, {tokens} tokens"
    if "runFinished" in event:
        run = event["runFinished"]
        return f"{head} run finished: {run['state']}: {run.get('output', '')}"
    return f"{head} {next(k for k in event if k not in ('sequence', 'createTime'))}"


def run_demo(base_url: str, echo: Callable[[str], None] = print, poll_timeout: float = 300.0) -> DemoResult:
    """Runs the demo scenario against a running gateway.

    Raises:
        DemoFailed: Any step failed.
    """
    client = Client(base_url, echo)
    result = DemoResult(tenant=f"demo-{secrets.token_hex(3)}")
    t = f"tenants/{result.tenant}"

    echo("1. Sign up a tenant; its first admin API key is shown once.")
    created = client.call(
        "POST",
        f"/v1/tenants?tenantId={result.tenant}",
        {"displayName": "Northwind Logistics", "industry": "logistics"},
    )
    echo("2. Exchange the API key for a short-lived JWT (OAuth 2.0 client credentials).")
    token = client.call(
        "POST",
        "/v1/oauth2/token",
        {"grant_type": "client_credentials", "client_secret": created["apiKeySecret"]},
    )
    client.token = result.token = token["access_token"]

    echo("3. A feature flag: agents of this tenant may call tools.")
    client.call(
        "POST",
        f"/v1/{t}/flags?flagId=agent-tools",
        {"state": "STATE_ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
    )
    echo("4. Two agents: a route planner with a tool, and a report writer.")
    client.call(
        "POST",
        f"/v1/{t}/agents?agentId=route-planner",
        {
            "displayName": "Route planner",
            "instructions": PLANNER_INSTRUCTIONS,
            "tools": ["tools/route_distance"],
            "toolChoice": "TOOL_CHOICE_REQUIRED",
            "temperature": 0,
            "maxOutputTokens": 96,
        },
    )
    client.call(
        "POST",
        f"/v1/{t}/agents?agentId=report-writer",
        {
            "displayName": "Report writer",
            "instructions": WRITER_INSTRUCTIONS,
            "temperature": 0,
            "maxOutputTokens": 96,
        },
    )

    echo("5. Run the route planner: the run starts at once; its events stream as they happen.")
    started = client.call(
        "POST",
        f"/v1/{t}/agents/route-planner/runs",
        {"input": "How far is it from Rotterdam to Milan by truck?"},
    )
    for event in client.stream(f"/v1/{started['name']}:streamEvents"):
        result.events.append(event)
        echo(_describe(event))
        if "runFinished" in event:
            result.run = event["runFinished"]
    if result.run.get("state") != "STATE_SUCCEEDED":
        raise DemoFailed(f"the run did not succeed: {result.run}")

    echo("6. A person approves the tool call of a dispatcher before it is made.")
    client.call(
        "POST",
        f"/v1/{t}/agents?agentId=dispatcher",
        {
            "displayName": "Dispatcher",
            "instructions": PLANNER_INSTRUCTIONS,
            "tools": ["tools/route_distance"],
            "approvalRequiredTools": ["tools/route_distance"],
            "toolChoice": "TOOL_CHOICE_REQUIRED",
            "temperature": 0,
            "maxOutputTokens": 96,
        },
    )
    started = client.call(
        "POST", f"/v1/{t}/agents/dispatcher/runs", {"input": "Plan a truck from Antwerp to Vienna."}
    )
    waiting = client.call("POST", f"/v1/{started['name']}:wait", {})
    if waiting.get("state") != "STATE_REQUIRES_ACTION":
        raise DemoFailed(f"the dispatcher's run did not wait for approval: {waiting}")
    approvals = [{"toolCallId": c["id"], "decision": "DECISION_APPROVE"} for c in waiting["pendingToolCalls"]]
    client.call("POST", f"/v1/{started['name']}:submitToolApprovals", {"approvals": approvals})
    result.approved_run = client.call("POST", f"/v1/{started['name']}:wait", {})
    if result.approved_run.get("state") != "STATE_SUCCEEDED":
        raise DemoFailed(f"the approved run did not succeed: {result.approved_run}")

    echo(
        "7. A workflow with a condition, parallel steps and an approval: plan the route; a long plan"
        " waits for a person's approval; then the customer update and a note to operations run in parallel."
    )

    def agent_run(agent: str, template: str = "") -> dict[str, str]:
        return {"agent": f"{t}/agents/{agent}", **({"inputTemplate": template} if template else {})}

    client.call(
        "POST",
        f"/v1/{t}/workflows?workflowId=route-report",
        {
            "displayName": "Route report",
            "outputTemplate": "{{ steps.report.output }}",
            "steps": [
                {"id": "plan", "agentRun": agent_run("route-planner")},
                {
                    "id": "long_plan",
                    "dependsOn": ["plan"],
                    "condition": {
                        "expression": "steps.plan.output.size() > 40",
                        "thenSteps": ["approve"],
                        "elseSteps": ["short_plan"],
                    },
                },
                {
                    "id": "approve",
                    "dependsOn": ["long_plan"],
                    "approval": {
                        "promptTemplate": "Send this plan? {{ steps.plan.output }}",
                        "timeout": "600s",
                    },
                },
                {
                    "id": "short_plan",
                    "dependsOn": ["long_plan"],
                    "notification": {
                        "channel": "ops",
                        "messageTemplate": "Short plan, sent without approval.",
                    },
                },
                {
                    "id": "report",
                    "dependsOn": ["approve", "short_plan"],
                    "agentRun": agent_run(
                        "report-writer", "Route facts: {{ steps.plan.output }}\nWrite the customer update."
                    ),
                },
                {
                    "id": "notify_ops",
                    "dependsOn": ["approve", "short_plan"],
                    "notification": {
                        "channel": "ops",
                        "messageTemplate": "Route planned: {{ steps.plan.output }}",
                    },
                },
            ],
        },
    )
    started = client.call(
        "POST", f"/v1/{t}/workflows/route-report/runs", {"input": "Plan a truck from Hamburg to Lyon."}
    )
    deadline = time.monotonic() + poll_timeout
    run = started
    while run.get("state") in ("RUN_STATE_PENDING", "RUN_STATE_RUNNING", "RUN_STATE_WAITING"):
        if time.monotonic() > deadline:
            raise DemoFailed(f"the workflow run did not finish in {poll_timeout:.0f}s")
        if run.get("state") == "RUN_STATE_WAITING":
            client.call(
                "POST",
                f"/v1/{started['name']}:signal",
                {
                    "signalName": "approve",
                    "payload": {"approved": True, "comment": "ok"},
                    "requestId": "demo",
                },
            )
        time.sleep(0.5)
        run = client.call("GET", f"/v1/{started['name']}", quiet=True)
    echo(f"\n$ GET /v1/{started['name']}  (polled until done)\n-> {json.dumps(run, indent=2)}")
    graph = client.call("GET", f"/v1/{started['name']}:graph", quiet=True)
    echo(f"\n$ GET /v1/{started['name']}:graph\n{graph.get('mermaid', '')}")
    result.workflow_run = run
    if run.get("state") != "RUN_STATE_SUCCEEDED":
        raise DemoFailed(f"the workflow run did not succeed: {run.get('error')}")

    echo("8. Ready-made agents: the templates of the tenant's industry come first; two templates")
    echo("   of different industries become agents and run on their example inputs with their tools.")
    offered = client.call("GET", "/v1/agentTemplates?industry=logistics&pageSize=3", quiet=True)
    echo("\n$ GET /v1/agentTemplates?industry=logistics&pageSize=3")
    echo("\n".join(f"  {t['name']}: {t['description']}" for t in offered["agentTemplates"]))
    for template in DEMO_TEMPLATES:
        shown = client.call("GET", f"/v1/{template}")
        agent_id = template.removeprefix("agentTemplates/")
        agent = client.call(
            "POST", f"/v1/{t}/agents?agentId={agent_id}", {"template": template, "temperature": 0}
        )
        started = client.call("POST", f"/v1/{agent['name']}/runs", {"input": shown["exampleInput"]})
        ended = client.call(
            "POST", f"/v1/{started['name']}:wait", {"timeout": f"{min(poll_timeout, 300):.0f}s"}
        )
        if ended.get("state") != "STATE_SUCCEEDED" or not ended.get("toolCalls"):
            raise DemoFailed(f"the run of {template} did not call its tool and succeed: {ended}")
        result.template_runs[template] = ended

    echo("9. The tenant's metered usage this month.")
    result.usage = client.call("GET", f"/v1/{t}/usageSummary")
    return result
