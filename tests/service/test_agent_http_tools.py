"""Tenants' HTTP tools over real gRPC: a real HTTP API on 127.0.0.1 (allow-listed), the real model.

A tenant defines a tool as a call to its API; the call expands the URL template, sends
the other arguments as JSON and the auth header from the sealed secret; an agent run
calls it; a broken or slow endpoint fails only that call; bad definitions are field
violations; internal addresses are refused unless the operator's allow-list names them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2
from sqlalchemy import select

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import resources_pb2 as wf_res
from orchestrall.workflow.v1 import workflow_service_pb2 as wf_pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as wf_grpc
from services.agent.models import HttpTool
from services.kit.db import create_engine
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    error_info,
    field_violations,
    new_tenant,
    run_to_end,
)
from tests.service.receivers import Answer, Receiver, json_answer, receiver
from tests.service.test_workflow import wait_for

SECRET = "Bearer orders-secret-0815"
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "enum": ["A-17"]},
        "note": {"type": "string"},
    },
    "required": ["order_id"],
}


#: What a run's tools take: one argument a grammar-constrained model can only fill right.
RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "enum": ["A-17"]}},
    "required": ["order_id"],
    "additionalProperties": False,
}


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def _tool(url_template: str, method: int = res.HttpTool.METHOD_GET, **fields: Any) -> res.HttpTool:
    fields.setdefault("parameters", _struct(ORDER_SCHEMA))
    fields.setdefault("description", "Looks up an order of the tenant's shop by its ID.")
    return res.HttpTool(
        method=method,
        url_template=url_template,
        **fields,
    )


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[Receiver]:
    async with receiver() as served:

        def answer(request: Any) -> Answer:
            if request.path == "/slow":
                return Answer(200, b"{}", delay=3)
            if request.path == "/broken":
                return json_answer({"error": "the order database is down"}, 500)
            if request.path == "/huge":
                return Answer(200, b"x" * 5000)
            if request.path == "/moved":
                return Answer(302, b"", {"location": "http://169.254.169.254/latest/meta-data/"})
            return json_answer({"order": request.path.rsplit("/", 1)[-1], "status": "shipped", "dock": "D7"})

        served.script = answer
        yield served


@pytest.fixture
async def stub(mesh: Mesh) -> AsyncIterator[pb_grpc.AgentServiceStub]:
    async with mesh.channel("agent") as channel:
        yield pb_grpc.AgentServiceStub(channel)


async def _create(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, tool_id: str, tool: res.HttpTool
) -> res.HttpTool:
    return await stub.CreateHttpTool(
        pb.CreateHttpToolRequest(parent=tenant.name, http_tool=tool, http_tool_id=tool_id),
        metadata=tenant.metadata,
    )


async def _call(stub: pb_grpc.AgentServiceStub, tenant: Tenant, name: str, arguments: dict[str, Any]) -> Any:
    answer = await stub.CallTool(
        pb.CallToolRequest(name=name, parent=tenant.name, arguments=_struct(arguments)),
        metadata=tenant.metadata,
    )
    return json.loads(json.dumps(dict(answer.result.struct_value)))


def _stored_auth(mesh: Mesh, tenant: Tenant) -> list[bytes | None]:
    engine = create_engine(mesh.config.settings("agent"), "agent", admin=True)
    table = HttpTool.__table__
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(table.c.auth_sealed).where(table.c.tenant_id == tenant.id)).all()
    finally:
        engine.dispose()
    return [None if sealed is None else bytes(sealed) for (sealed,) in rows]


async def test_an_http_tool_calls_the_tenants_api_with_its_sealed_auth_header(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, api: Receiver
) -> None:
    tenant = await new_tenant(mesh, "ht")
    tool = _tool(
        f"{api.url}/orders/{{order_id}}",
        auth_header_name="authorization",
        auth_header_value=SECRET,
        timeout=duration_pb2.Duration(seconds=2),
    )
    created = await _create(stub, tenant, "orders", tool)
    assert created.name == f"{tenant.name}/httpTools/orders"
    assert (created.auth_header_name, created.auth_header_value) == ("authorization", "")
    assert created.max_response_bytes == 262144 and created.timeout.seconds == 2

    assert await _call(stub, tenant, created.name, {"order_id": "A-17"}) == {
        "order": "A-17",
        "status": "shipped",
        "dock": "D7",
    }
    request = api.on("/orders/A-17")[-1]
    assert (request.method, request.headers["authorization"]) == ("GET", SECRET)
    assert request.headers["host"] == f"127.0.0.1:{api.port}"
    # Stored sealed, never returned.
    [sealed] = _stored_auth(mesh, tenant)
    assert sealed is not None and SECRET.encode() not in sealed
    fetched = await stub.GetHttpTool(pb.GetHttpToolRequest(name=created.name), metadata=tenant.metadata)
    assert fetched.auth_header_value == "" and fetched == created
    listed = await stub.ListHttpTools(pb.ListHttpToolsRequest(parent=tenant.name), metadata=tenant.metadata)
    assert [t.name for t in listed.http_tools] == [created.name]
    catalog = await stub.ListTools(pb.ListToolsRequest(parent=tenant.name), metadata=tenant.metadata)
    [offered] = [t for t in catalog.tools if t.name == created.name]
    assert offered.function_name == "http__orders"


async def test_post_sends_the_unused_arguments_as_json_and_updates_apply(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, api: Receiver
) -> None:
    tenant = await new_tenant(mesh, "hp")
    created = await _create(
        stub, tenant, "notes", _tool(f"{api.url}/orders/{{order_id}}", res.HttpTool.METHOD_POST)
    )
    await _call(stub, tenant, created.name, {"order_id": "A-17", "note": "leave at dock 7"})
    request = api.on("/orders/A-17")[-1]
    assert request.method == "POST" and request.json() == {"note": "leave at dock 7"}

    updated = await stub.UpdateHttpTool(
        pb.UpdateHttpToolRequest(
            http_tool=res.HttpTool(name=created.name, url_template=f"{api.url}/v2/orders/{{order_id}}"),
            update_mask=field_mask_pb2.FieldMask(paths=["url_template"]),
        ),
        metadata=tenant.metadata,
    )
    assert (
        updated.url_template.endswith("/v2/orders/{order_id}") and updated.method == res.HttpTool.METHOD_POST
    )
    await _call(stub, tenant, created.name, {"order_id": "A-17"})
    assert api.on("/v2/orders/A-17")[-1].json() == {}
    await stub.DeleteHttpTool(pb.DeleteHttpToolRequest(name=created.name), metadata=tenant.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await _call(stub, tenant, created.name, {"order_id": "A-17"})
    assert error_info(gone.value).reason == "TOOL_NOT_FOUND"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/broken", "answered HTTP 500"),
        ("/slow", "did not answer within 1 s"),
        ("/huge", "over the tool's limit of 1000 bytes"),
        ("/moved", "redirect (HTTP 302), which is not followed"),
    ],
)
async def test_a_broken_slow_huge_or_redirecting_endpoint_fails_the_call(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, api: Receiver, path: str, expected: str
) -> None:
    tenant = await new_tenant(mesh, "hb")
    tool = _tool(f"{api.url}{path}", timeout=duration_pb2.Duration(seconds=1), max_response_bytes=1000)
    created = await _create(stub, tenant, "flaky", tool)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _call(stub, tenant, created.name, {"order_id": "A-17"})
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(failed.value).reason == "TOOL_FAILED"
    assert expected in (failed.value.details() or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/orders",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/orders",
        "http://127.0.0.2:9/orders",
        "http://100.64.0.1/orders",
    ],
)
async def test_internal_addresses_outside_the_allow_list_are_refused(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, url: str
) -> None:
    tenant = await new_tenant(mesh, "hs")
    created = await _create(stub, tenant, "internal", _tool(url))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _call(stub, tenant, created.name, {"order_id": "A-17"})
    assert error_info(refused.value).reason == "TOOL_FAILED"
    assert "which outbound calls may not reach" in (refused.value.details() or "")


async def test_without_the_allow_list_loopback_and_names_resolving_to_it_are_refused(
    mesh: Mesh, model_url: str, api: Receiver
) -> None:
    tenant = await new_tenant(mesh, "hn")
    replica = await agent_replica(mesh, model_url, egress_allowed_networks=[])
    try:
        async with agent_channel(mesh, replica) as channel:
            strict = pb_grpc.AgentServiceStub(channel)
            for tool_id, url in (
                ("by-address", f"{api.url}/orders"),
                ("by-name", f"http://localhost:{api.port}/o"),
            ):
                created = await _create(strict, tenant, tool_id, _tool(url))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await _call(strict, tenant, created.name, {"order_id": "A-17"})
                assert "a loopback address" in (refused.value.details() or ""), tool_id
    finally:
        await replica.stop(0)
    assert not api.on("/o")


async def test_bad_http_tools_are_field_violations(mesh: Mesh, stub: pb_grpc.AgentServiceStub) -> None:
    tenant = await new_tenant(mesh, "hv")
    cases: list[tuple[res.HttpTool, list[str]]] = [
        (_tool("https://api.example.com/orders{?order_id}"), ["http_tool.url_template"]),  # level 3
        (_tool("https://api.example.com/orders/{order_id"), ["http_tool.url_template"]),  # unbalanced
        (_tool("https://api.example.com/{customer}"), ["http_tool.url_template"]),  # not a parameter
        (_tool("https://{order_id}.example.com/"), ["http_tool.url_template"]),  # the host templated
        (_tool("ftp://api.example.com/{order_id}"), ["http_tool.url_template"]),
        (_tool("https://user:pw@api.example.com/{order_id}"), ["http_tool.url_template"]),
        (
            _tool("https://api.example.com/", parameters=_struct({"type": "objekt"})),
            ["http_tool.parameters.type"],
        ),
        (
            _tool("https://api.example.com/", parameters=_struct({"type": "string"})),
            ["http_tool.parameters.type"],
        ),
        (_tool("https://api.example.com/", method=res.HttpTool.METHOD_UNSPECIFIED), ["http_tool.method"]),
        (
            _tool("https://api.example.com/", auth_header_name="host", auth_header_value="x"),
            ["http_tool.auth_header_name"],
        ),
        (_tool("https://api.example.com/", auth_header_value="orphan"), ["http_tool.auth_header_name"]),
        (_tool("https://api.example.com/", description=" "), ["http_tool.description"]),
    ]
    for tool, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await _create(stub, tenant, "bad", tool)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, tool
        assert field_violations(bad.value) == fields, tool
    listed = await stub.ListHttpTools(pb.ListHttpToolsRequest(parent=tenant.name), metadata=tenant.metadata)
    assert not listed.http_tools


async def test_arguments_are_checked_against_the_schema_and_tenants_are_isolated(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, api: Receiver
) -> None:
    owner, other = await new_tenant(mesh, "ho"), await new_tenant(mesh, "hx")
    created = await _create(stub, owner, "orders", _tool(f"{api.url}/orders/{{order_id}}"))
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _call(stub, owner, created.name, {"order_id": "B-1"})
    assert field_violations(bad.value) == ["arguments.order_id"]
    # Another tenant can neither call it, nor read it, nor give it to its agents.
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await _call(stub, other, created.name, {"order_id": "A-17"})
    assert error_info(foreign.value).reason == "TENANT_MISMATCH"  # the guard reads every name in a request
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.GetHttpTool(pb.GetHttpToolRequest(name=created.name), metadata=other.metadata)
    assert error_info(denied.value).reason == "TENANT_MISMATCH"
    with pytest.raises(grpc.aio.AioRpcError) as agent:
        await stub.CreateAgent(
            pb.CreateAgentRequest(
                parent=other.name, agent=res.Agent(instructions="Help.", tools=[created.name])
            ),
            metadata=other.metadata,
        )
    assert field_violations(agent.value) == ["agent.tools[0]"]


async def test_an_agent_run_calls_the_http_tool_and_a_broken_one_fails_only_its_call(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, api: Receiver
) -> None:
    tenant = await new_tenant(mesh, "hr")
    schema = _struct(RUN_SCHEMA)
    good = await _create(stub, tenant, "orders", _tool(f"{api.url}/orders/{{order_id}}", parameters=schema))
    broken = await _create(stub, tenant, "broken", _tool(f"{api.url}/broken", parameters=schema))
    for tool, failed in ((good, False), (broken, True)):
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(
                parent=tenant.name,
                agent=res.Agent(
                    instructions="You track orders. Look the order up, then answer in one short sentence.",
                    tools=[tool.name],
                    tool_choice=res.TOOL_CHOICE_REQUIRED,
                    temperature=0,
                    max_output_tokens=32,
                ),
            ),
            metadata=tenant.metadata,
        )
        run = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Where is order A-17?")),
            tenant.metadata,
        )
        assert run.state == res.Run.STATE_SUCCEEDED, run.error
        call = run.tool_calls[0]
        assert (call.tool, call.failed) == (tool.name, failed)
        assert ("shipped" in call.result) != failed and ("answered HTTP 500" in call.result) == failed


async def test_a_workflow_tool_step_calls_an_http_tool(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, api: Receiver
) -> None:
    tenant = await new_tenant(mesh, "hw")
    tool = await _create(stub, tenant, "orders", _tool(f"{api.url}/orders/{{order_id}}"))
    step = wf_res.Workflow.Step(
        id="look",
        tool_call=wf_res.Workflow.ToolCall(tool=tool.name, arguments_template='{"order_id": "A-17"}'),
    )
    async with mesh.channel("workflow") as channel:
        workflows = wf_grpc.WorkflowServiceStub(channel)
        other = await new_tenant(mesh, "hy")
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await workflows.CreateWorkflow(
                wf_pb.CreateWorkflowRequest(parent=other.name, workflow=wf_res.Workflow(steps=[step])),
                metadata=other.metadata,
            )
        assert field_violations(foreign.value) == ["workflow.steps[0].tool_call.tool"]
        workflow = await workflows.CreateWorkflow(
            wf_pb.CreateWorkflowRequest(parent=tenant.name, workflow=wf_res.Workflow(steps=[step])),
            metadata=tenant.metadata,
        )
        run = await workflows.CreateWorkflowRun(
            wf_pb.CreateWorkflowRunRequest(parent=workflow.name, workflow_run=wf_res.WorkflowRun(input="go")),
            metadata=tenant.metadata,
        )
        done = await wait_for(workflows, run.name, tenant)
    assert done.state == wf_res.RUN_STATE_SUCCEEDED, done.error
    assert json.loads(done.steps[0].output) == {"order": "A-17", "status": "shipped", "dock": "D7"}
