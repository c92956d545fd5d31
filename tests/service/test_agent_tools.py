"""AgentService.CallTool: a built-in tool called with JSON arguments, as a run's tool call would be."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from services.agent.tools import route_distance
from services.kit.clients import MeshClients
from services.kit.jsonvalue import from_value
from tests.conftest import Mesh
from tests.service.helpers import error_info, field_violations, new_tenant


def _arguments(**values: object) -> struct_pb2.Struct:
    arguments = struct_pb2.Struct()
    arguments.update(values)
    return arguments


async def test_a_tool_call_returns_the_tools_result(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        answer = await pb_grpc.AgentServiceStub(channel).CallTool(
            pb.CallToolRequest(
                name="tools/route_distance",
                parent=tenant.name,
                arguments=_arguments(origin="Rotterdam", destination="Hamburg"),
            ),
            metadata=tenant.metadata,
        )
    assert from_value(answer.result) == route_distance({"origin": "Rotterdam", "destination": "Hamburg"})


async def test_arguments_are_checked_against_the_tools_schema(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CallTool(
                pb.CallToolRequest(
                    name="tools/route_distance", parent=tenant.name, arguments=_arguments(origin="Atlantis")
                ),
                metadata=tenant.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sorted(field_violations(caught.value)) == ["arguments.destination", "arguments.origin"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CallTool(
                pb.CallToolRequest(
                    name="tools/invoice_total",
                    parent=tenant.name,
                    arguments=_arguments(lines=[{"quantity": "two"}], tax_rate_percent=21),
                ),
                metadata=tenant.metadata,
            )
        assert sorted(field_violations(caught.value)) == [
            "arguments.lines[0].quantity",
            "arguments.lines[0].unit_price",
        ]
        # Valid by the schema, refused by the tool itself (ToolError).
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CallTool(
                pb.CallToolRequest(
                    name="tools/route_distance",
                    parent=tenant.name,
                    arguments=_arguments(origin="Paris", destination="Paris"),
                ),
                metadata=tenant.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == ["arguments"]


async def test_an_unknown_tool_is_not_found(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.AgentServiceStub(channel).CallTool(
                pb.CallToolRequest(name="tools/teleport", parent=tenant.name), metadata=tenant.metadata
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert (info.reason, info.domain, info.metadata["name"]) == (
        "TOOL_NOT_FOUND",
        "agent.orchestrall.dev",
        "tools/teleport",
    )


async def test_another_tenants_parent_is_refused(mesh: Mesh) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.AgentServiceStub(channel).CallTool(
                pb.CallToolRequest(
                    name="tools/route_distance",
                    parent=other.name,
                    arguments=_arguments(origin="Paris", destination="Lyon"),
                ),
                metadata=tenant.metadata,
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "TENANT_MISMATCH"


async def test_the_workflow_service_calls_tools_for_a_tenant(mesh: Mesh) -> None:
    """The workflow service's identity may call CallTool (the policy table) acting for one tenant only."""
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    request = pb.CallToolRequest(
        name="tools/route_distance",
        parent=tenant.name,
        arguments=_arguments(origin="Paris", destination="Lyon"),
    )
    async with mesh.channel("agent", identity="workflow") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        answer = await stub.CallTool(request, metadata=MeshClients.for_tenant(tenant.id))
        assert from_value(answer.result)["origin"] == "Paris"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CallTool(request, metadata=MeshClients.for_tenant(other.id))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with mesh.channel("agent", identity="billing") as channel:  # not in the policy table
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.AgentServiceStub(channel).CallTool(
                request, metadata=MeshClients.for_tenant(tenant.id)
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
