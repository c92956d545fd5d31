"""The agent reads its tenants' flags through OpenFeature, from one in-process flagd provider.

The provider (``openfeature-provider-flagd``, in-process mode) syncs every tenant's flags
from the flag service over the mesh's mutual TLS, on the agent's identity; a run
evaluates them in memory (services/agent/flags.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from openfeature.event import EventDetails, ProviderEvent
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as flag_grpc
from orchestrall.flag.v1 import resources_pb2 as flag_res
from services.agent.flags import flag_key
from services.cli.stack import free_port
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_flags,
    agent_replica,
    flag_synced,
    new_tenant,
    run_to_end,
)
from tests.service.test_agent import create_planner

_SWITCH = {"on": struct_pb2.Value(bool_value=True), "off": struct_pb2.Value(bool_value=False)}


async def _tools_flag(mesh: Mesh, tenant: Tenant, default_variant: str) -> None:
    async with mesh.channel("flag") as channel:
        await flag_grpc.FlagServiceStub(channel).CreateFlag(
            flag_pb.CreateFlagRequest(
                parent=tenant.name,
                flag_id="agent-tools",
                flag=flag_res.Flag(
                    state=flag_res.Flag.STATE_ENABLED, variants=_SWITCH, default_variant=default_variant
                ),
            ),
            metadata=tenant.metadata,
        )


async def _first_document(mesh: Mesh, identity: str) -> dict[str, dict[str, object]]:
    """The first document of a ``SyncFlags`` stream opened on ``identity``'s certificate, no token."""
    async with mesh.channel("flag", identity) as channel:
        stream = sync_pb2_grpc.FlagSyncServiceStub(channel).SyncFlags(sync_pb2.SyncFlagsRequest(), timeout=10)
        try:
            async for response in stream:
                flags: dict[str, dict[str, object]] = json.loads(response.flag_configuration)["flags"]
                return flags
        finally:
            stream.cancel()
    raise AssertionError("the stream ended without a document")


async def test_the_agents_identity_syncs_every_tenants_flags_under_namespaced_keys(mesh: Mesh) -> None:
    first, second = await new_tenant(mesh), await new_tenant(mesh)
    await _tools_flag(mesh, first, "on")
    await _tools_flag(mesh, second, "off")
    flags = await _first_document(mesh, "agent")
    assert flags[flag_key(first.id, "agent-tools")]["defaultVariant"] == "on"
    assert flags[flag_key(second.id, "agent-tools")]["defaultVariant"] == "off"
    assert "agent-tools" not in flags and all("/" in key for key in flags)


@pytest.mark.parametrize("identity", ["workflow", "billing", "gateway"])
async def test_other_identities_cannot_sync_without_a_token(mesh: Mesh, identity: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _first_document(mesh, identity)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_update_reaches_the_agent_within_a_second_and_the_next_run_offers_no_tools(
    mesh: Mesh,
) -> None:
    tenant = await new_tenant(mesh)
    server = mesh.servers["agent"]
    async with flag_synced(server, tenant, "agent-tools"):
        await _tools_flag(mesh, tenant, "on")
    client = agent_flags(server).client
    key = flag_key(tenant.id, "agent-tools")
    installed = threading.Event()

    def on_change(details: EventDetails) -> None:
        if key in (details.flags_changed or ()):
            installed.set()

    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        async with mesh.channel("flag") as channel:
            await flag_grpc.FlagServiceStub(channel).UpdateFlag(
                flag_pb.UpdateFlagRequest(
                    flag=flag_res.Flag(name=f"{tenant.name}/flags/agent-tools", default_variant="off"),
                    update_mask=field_mask_pb2.FieldMask(paths=["default_variant"]),
                ),
                metadata=tenant.metadata,
            )
        updated = time.monotonic()
        assert await asyncio.to_thread(installed.wait, 1.0), "the agent did not see the update within 1 s"
        print(f"UpdateFlag -> agent provider: {(time.monotonic() - updated) * 1000:.1f} ms")
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await create_planner(stub, tenant)
        run = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam to Paris?")),
            tenant.metadata,
        )
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    assert not run.tools_enabled and not run.tool_calls


async def test_an_agent_started_while_the_flag_service_is_down_serves_with_the_defaults(
    mesh: Mesh, model_url: str
) -> None:
    tenant = await new_tenant(mesh)
    async with flag_synced(mesh.servers["agent"], tenant, "agent-tools"):
        await _tools_flag(mesh, tenant, "off")  # were it read, the run would get no tools
    addresses = {**mesh.config.settings("agent").addresses, "flag": f"127.0.0.1:{free_port()}"}
    started = time.monotonic()
    server = await agent_replica(mesh, model_url, addresses=addresses)
    try:
        print(f"agent start with the flag service down: {(time.monotonic() - started) * 1000:.0f} ms")
        async with agent_channel(mesh, server) as channel:
            stub = pb_grpc.AgentServiceStub(channel)
            agent = await create_planner(stub, tenant)
            run = await run_to_end(
                stub,
                pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam to Paris?")),
                tenant.metadata,
            )
        assert run.state == res.Run.STATE_SUCCEEDED, run.error
        assert run.tools_enabled
    finally:
        await server.stop(0)
