"""Limits of runs and broken tools, over real gRPC with the real model server.

Tests of the run deadline and the per-tenant bound start an agent replica of their own
(same database and peers as the mesh) with small limits.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent.server import AgentSettings, build
from services.kit import mtls
from services.kit.server import RunningServer, start
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, extra_tool, hub_tool, new_tenant, retry_info, run_to_end
from tests.service.test_agent import create_planner, usage

RUN_TIMEOUT = 6.0


def _hub_agent(tool_id: str) -> res.Agent:
    return res.Agent(
        instructions="You look up hubs. Call the tool, then answer in one sentence.",
        tools=[f"tools/{tool_id}"],
        tool_choice=res.TOOL_CHOICE_REQUIRED,
        temperature=0,
        max_output_tokens=24,
    )


@pytest.fixture(scope="module")
async def limited(mesh: Mesh, model_url: str) -> AsyncIterator[RunningServer]:
    """A second agent replica: runs of at most RUN_TIMEOUT seconds, one in progress per tenant."""
    base = mesh.config.settings("agent").model_copy(
        update={
            "tls_dir": mesh.tls_dir,
            "listen": "127.0.0.1:0",
            "metrics_listen": None,
            "audit_relay_interval_seconds": 0.2,
        }
    )
    settings = AgentSettings(
        **base.model_dump(), openai_base_url=model_url, run_timeout_seconds=RUN_TIMEOUT, max_running_runs=1
    )
    server = await start(*(await build(settings)))
    yield server
    await server.stop(0)


def _channel(mesh: Mesh, server: RunningServer) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        f"127.0.0.1:{server.port}",
        mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "gateway")),
        options=[("grpc.ssl_target_name_override", "agent")],
    )


async def _run(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, agent: str, text: str = "Rotterdam?"
) -> res.Run:
    return await run_to_end(
        stub, pb.CreateRunRequest(parent=agent, run=res.Run(input=text)), metadata=tenant.metadata
    )


def _explode(args: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("function", "error"),
    [(_explode, "the tool failed"), (lambda args: {"hubs": {"Rotterdam"}}, "not JSON")],
    ids=["raises", "non-json"],
)
async def test_a_broken_tool_goes_back_to_the_model_and_the_run_finishes(
    mesh: Mesh, function: Any, error: str
) -> None:
    tenant = await new_tenant(mesh)
    with extra_tool(hub_tool("hub_info", function)):
        async with mesh.channel("agent") as channel:
            stub = pb_grpc.AgentServiceStub(channel)
            agent = await stub.CreateAgent(
                pb.CreateAgentRequest(parent=tenant.name, agent=_hub_agent("hub_info")),
                metadata=tenant.metadata,
            )
            run = await _run(stub, tenant, agent.name)
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    [call] = run.tool_calls[:1]
    assert call.tool == "tools/hub_info" and call.failed
    assert error in json.loads(call.result)["error"]
    assert run.usage.model_calls >= 2, "the model is asked again, with the tool's error"


async def test_a_run_past_its_deadline_fails_with_run_timeout_and_its_usage_is_metered(
    mesh: Mesh, limited: RunningServer
) -> None:
    tenant = await new_tenant(mesh)
    released = threading.Event()
    with extra_tool(hub_tool("slow_hub", lambda args: released.wait(60) and {"hub": "Rotterdam"})):
        try:
            async with _channel(mesh, limited) as channel:
                stub = pb_grpc.AgentServiceStub(channel)
                agent = await stub.CreateAgent(
                    pb.CreateAgentRequest(parent=tenant.name, agent=_hub_agent("slow_hub")),
                    metadata=tenant.metadata,
                )
                started = asyncio.get_running_loop().time()
                run = await _run(stub, tenant, agent.name)
                took = asyncio.get_running_loop().time() - started
        finally:
            released.set()
    assert run.state == res.Run.STATE_FAILED
    assert run.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    reason = error_details_pb2.ErrorInfo()
    assert run.error.details[0].Unpack(reason) and reason.reason == "RUN_TIMEOUT"
    assert RUN_TIMEOUT <= took < RUN_TIMEOUT + 3
    assert run.usage.model_calls == 1 and run.usage.output_tokens > 0
    assert [c.tool for c in run.tool_calls] == []  # the call never returned
    metered = await usage(mesh, tenant)
    assert metered["agent_runs"] == 1 and metered["model_output_tokens"] == run.usage.output_tokens


async def test_a_tenant_with_its_most_runs_in_progress_is_told_to_retry(
    mesh: Mesh, limited: RunningServer
) -> None:
    busy, other = await new_tenant(mesh), await new_tenant(mesh)
    released = threading.Event()
    with extra_tool(hub_tool("held_hub", lambda args: released.wait(60) and {"hub": "Rotterdam"})):
        try:
            async with _channel(mesh, limited) as channel:
                stub = pb_grpc.AgentServiceStub(channel)
                held = await stub.CreateAgent(
                    pb.CreateAgentRequest(parent=busy.name, agent=_hub_agent("held_hub")),
                    metadata=busy.metadata,
                )
                first = asyncio.create_task(_run(stub, busy, held.name))
                while not (
                    await stub.ListRuns(pb.ListRunsRequest(parent=held.name), metadata=busy.metadata)
                ).runs:
                    await asyncio.sleep(0.05)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await _run(stub, busy, held.name)
                planner = await create_planner(stub, other)
                others = await _run(stub, other, planner.name, "Rotterdam to Berlin?")
                released.set()
                finished = await first
                after = await _run(stub, busy, held.name)
        finally:
            released.set()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(caught.value)
    assert info.reason == "TOO_MANY_RUNS" and info.metadata["limit"] == "1"
    retry = retry_info(caught.value)
    assert retry is not None and retry.retry_delay.seconds >= 1
    assert others.state == res.Run.STATE_SUCCEEDED, "another tenant's runs are not held up"
    assert finished.state == res.Run.STATE_SUCCEEDED and after.state == res.Run.STATE_SUCCEEDED
