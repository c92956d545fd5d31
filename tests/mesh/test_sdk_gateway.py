"""The typed Python SDK on the real stack: the demo through Envoy, mTLS to a service, errors, tokens, retries.

Every call here is the SDK's (``orchestrall.sdk``): betterproto2 messages over grpclib, through
the gateway's gRPC listener unless a test says otherwise. Nothing of the server is imported.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from orchestrall.sdk import (
    Client,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    Unavailable,
    agent,
    auth,
    billing,
    flag,
    pages,
    paginate,
    workflow,
)
from orchestrall.sdk.proto.google.protobuf import Value
from services.cli.stack import Stack, free_port

pytestmark = pytest.mark.mesh

PLANNER = (
    "You are a logistics route planner. Use the route_distance tool to get the road distance and drive time, "
    "then answer in one sentence with the distance in km and the drive time in hours."
)


def gateway(stack: Stack) -> str:
    return f"127.0.0.1:{stack.config.http_port}"


async def sign_up(stack: Stack, prefix: str) -> tuple[str, str]:
    """Creates a tenant with the SDK alone; returns its name and its first API key's secret."""
    async with Client(gateway(stack)) as anonymous:
        created = await anonymous.auth.create_tenant(
            auth.CreateTenantRequest(
                tenant_id=f"{prefix}-{secrets.token_hex(3)}",
                tenant=auth.Tenant(display_name="Northwind Logistics", industry="logistics"),
            )
        )
    assert created.tenant is not None
    return created.tenant.name, created.api_key_secret


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_the_demo_with_the_sdk_alone_through_envoy(stack: Stack) -> None:
    tenant, secret = await sign_up(stack, "sdk")
    async with Client(gateway(stack), api_key=secret, timeout=120) as client:
        enabled = await client.flags.create_flag(
            flag.CreateFlagRequest(
                parent=tenant,
                flag_id="agent-tools",
                flag=flag.Flag(
                    state=flag.FlagState.ENABLED,
                    variants={"on": Value(bool_value=True), "off": Value(bool_value=False)},
                    default_variant="on",
                ),
            )
        )
        assert enabled.name == f"{tenant}/flags/agent-tools"
        listed = await client.flags.list_flags(flag.ListFlagsRequest(parent=tenant))
        assert [f.name for f in listed.flags] == [enabled.name]

        planner = await client.agents.create_agent(
            agent.CreateAgentRequest(
                parent=tenant,
                agent_id="route-planner",
                agent=agent.Agent(
                    display_name="Route planner",
                    instructions=PLANNER,
                    tools=["tools/route_distance"],
                    tool_choice=agent.ToolChoice.REQUIRED,
                    temperature=0,
                    max_output_tokens=96,
                ),
            )
        )
        assert isinstance(planner, agent.Agent) and planner.create_time is not None
        run = await client.agents.create_run(
            agent.CreateRunRequest(
                parent=planner.name, run=agent.Run(input="How far is it from Rotterdam to Milan by truck?")
            )
        )
        events = [
            e async for e in client.agents.stream_run_events(agent.StreamRunEventsRequest(name=run.name))
        ]
        finished = events[-1].run_finished
        assert finished is not None and finished.state == agent.RunState.SUCCEEDED, finished
        assert any(
            e.tool_call_finished and e.tool_call_finished.tool == "tools/route_distance" for e in events
        )

        flow = await client.workflows.create_workflow(
            workflow.CreateWorkflowRequest(
                parent=tenant,
                workflow_id="route-report",
                workflow=workflow.Workflow(
                    display_name="Route report",
                    steps=[
                        workflow.WorkflowStep(
                            id="plan", agent_run=workflow.WorkflowAgentRun(agent=planner.name)
                        )
                    ],
                ),
            )
        )
        started = await client.workflows.create_workflow_run(
            workflow.CreateWorkflowRunRequest(
                parent=flow.name,
                workflow_run=workflow.WorkflowRun(input="Plan a truck from Hamburg to Lyon."),
                request_id="sdk-demo",
            )
        )
        deadline = time.monotonic() + 300
        ended = started
        while ended.state in (workflow.RunState.PENDING, workflow.RunState.RUNNING):
            assert time.monotonic() < deadline, ended
            await asyncio.sleep(0.5)
            ended = await client.workflows.get_workflow_run(workflow.GetWorkflowRunRequest(name=started.name))
        assert ended.state == workflow.RunState.SUCCEEDED, ended.error

        usage = await client.billing.get_usage_summary(
            billing.GetUsageSummaryRequest(name=f"{tenant}/usageSummary")
        )
        meters = {m.meter: m.quantity for m in usage.meters}
        assert meters.get("agent_runs", 0) >= 2, meters


async def test_paginate_yields_every_resource_of_a_list_over_its_pages(stack: Stack) -> None:
    tenant, secret = await sign_up(stack, "sdkp")
    async with Client(gateway(stack), api_key=secret) as client:
        made = [
            (
                await client.agents.create_agent(
                    agent.CreateAgentRequest(
                        parent=tenant, agent_id=f"writer-{i}", agent=agent.Agent(instructions="Write.")
                    )
                )
            ).name
            for i in range(5)
        ]
        first = agent.ListAgentsRequest(parent=tenant, page_size=2)
        listed = [a.name async for a in paginate(client.agents.list_agents, first)]
        sizes = [len(page.agents) async for page in pages(client.agents.list_agents, first)]
    assert listed == made[::-1]  # newest first
    assert sizes == [2, 2, 1]
    assert first.page_token == ""


async def test_a_service_directly_over_mtls_with_the_projects_ca(stack: Stack) -> None:
    tenant, secret = await sign_up(stack, "sdkm")
    async with Client(gateway(stack), api_key=secret) as through_envoy:
        token = await through_envoy.token()
        await through_envoy.agents.create_agent(
            agent.CreateAgentRequest(
                parent=tenant,
                agent_id="writer",
                agent=agent.Agent(display_name="Writer", instructions="Write."),
            )
        )
    tls = stack.config.tls_dir
    async with Client(
        f"127.0.0.1:{stack.config.service_ports['agent']}",
        token=token,
        ca_file=tls / "ca.pem",
        cert_file=tls / "cli.pem",
        key_file=tls / "cli-key.pem",
    ) as direct:
        listed = await direct.agents.list_agents(agent.ListAgentsRequest(parent=tenant))
    assert [a.name for a in listed.agents] == [f"{tenant}/agents/writer"]
    # Without the client certificate the service does not answer.
    async with Client(
        f"127.0.0.1:{stack.config.service_ports['agent']}",
        token=token,
        ca_file=tls / "ca.pem",
        retry=RetryPolicy(attempts=1),
    ) as anonymous_peer:
        with pytest.raises(Unavailable):
            await anonymous_peer.agents.list_agents(agent.ListAgentsRequest(parent=tenant))


async def test_bad_input_is_a_typed_error_with_its_reason_and_field_violation(stack: Stack) -> None:
    tenant, secret = await sign_up(stack, "sdke")
    async with Client(gateway(stack), api_key=secret) as client:
        with pytest.raises(InvalidArgument) as bad:
            await client.agents.create_agent(
                agent.CreateAgentRequest(
                    parent=tenant,
                    agent_id="Not An ID!",
                    agent=agent.Agent(display_name="x", instructions="x"),
                )
            )
        with pytest.raises(NotFound) as missing:
            await client.agents.get_agent(agent.GetAgentRequest(name=f"{tenant}/agents/nobody"))
    assert bad.value.reason == "INVALID_ARGUMENT" and bad.value.domain == "agent.orchestrall.dev"
    assert [v.field for v in bad.value.field_violations] == ["agent_id"], bad.value.field_violations
    assert missing.value.reason.endswith("NOT_FOUND") and missing.value.domain == "agent.orchestrall.dev"


async def test_the_token_is_renewed_before_it_expires(stack: Stack) -> None:
    tenant, secret = await sign_up(stack, "sdkt")
    now = [1000.0]
    async with Client(gateway(stack), api_key=secret, clock=lambda: now[0], refresh_before=60) as client:
        request = agent.ListAgentsRequest(parent=tenant)
        await client.agents.list_agents(request)
        first = await client.token()
        assert first and client.credentials is not None and client.credentials.issued == 1
        lifetime = claims(first)["exp"] - claims(first)["iat"]
        now[0] += lifetime - 61  # not due yet: the same token
        await client.agents.list_agents(request)
        assert await client.token() == first and client.credentials.issued == 1
        now[0] += 2  # less than a minute left: renewed before the call
        await client.agents.list_agents(request)
        second = await client.token()
    assert second and client.credentials.issued == 2 and second != first
    assert claims(second)["jti"] != claims(first)["jti"]


@contextlib.asynccontextmanager
async def forwarder(port: int, target_port: int) -> AsyncIterator[None]:
    """A TCP relay on ``port`` to the gateway: the "server" that comes up after the first attempt."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_idempotent_calls_are_retried_on_unavailable_until_the_server_is_up(stack: Stack) -> None:
    tenant, secret = await sign_up(stack, "sdkr")
    async with Client(gateway(stack), api_key=secret) as client:
        token = await client.token()
    port = free_port()
    async with contextlib.AsyncExitStack() as later:
        waits: list[float] = []

        async def start_server_then_wait(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:
                await later.enter_async_context(forwarder(port, stack.config.http_port))

        async with Client(f"127.0.0.1:{port}", token=token, sleep=start_server_then_wait) as client:
            # Not idempotent (a Create without request_id): not repeated, UNAVAILABLE at once.
            with pytest.raises(Unavailable):
                await client.agents.create_agent(
                    agent.CreateAgentRequest(
                        parent=tenant, agent_id="a", agent=agent.Agent(display_name="a", instructions="a")
                    )
                )
            assert waits == []
            # A List is: the first attempt is refused, the server starts in the backoff, the second answers.
            listed = await client.agents.list_agents(agent.ListAgentsRequest(parent=tenant))
            assert listed.agents == [] and len(waits) == 1
            # A Create with a request_id is idempotent too, and now goes through.
            created = await client.agents.create_agent(
                agent.CreateAgentRequest(
                    parent=tenant,
                    agent_id="b",
                    agent=agent.Agent(display_name="b", instructions="b"),
                    request_id="sdk-retry",
                )
            )
            assert created.name == f"{tenant}/agents/b"
