"""The kit's data path under the services.

Migrations and models agree, units of work are atomic, a dropped connection costs
no call, and flag changes reach another replica.
"""

from __future__ import annotations

import asyncio
import importlib
import time

import grpc
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf import field_mask_pb2, struct_pb2

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as flag_grpc
from orchestrall.flag.v1 import resources_pb2 as flag_res
from services.agent.models import AgentRow
from services.agent.store import AGENTS
from services.flag.server import FlagSettings
from services.flag.server import build as build_flag
from services.kit import mtls
from services.kit.config import SERVICES
from services.kit.db import Database, Tx, create_engine
from services.kit.server import start
from services.kit.timestamps import utcnow
from tests.conftest import POSTGRES_URL, Mesh
from tests.service.helpers import new_tenant


@pytest.mark.parametrize("service", SERVICES)
def test_the_migrated_schema_is_the_models(mesh: Mesh, service: str) -> None:
    """Alembic's autogenerate finds nothing to do: migrations and ORM models describe one schema."""
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    engine = create_engine(mesh.config.settings(service), service, admin=True)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


async def test_a_failing_unit_of_work_writes_nothing(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    db = Database(create_engine(mesh.config.settings("agent"), "agent"))
    agent = AgentRow(
        tenant_id=tenant.id,
        id="half-written",
        display_name="",
        model="",
        instructions="x",
        tools=[],
        temperature=None,
        max_output_tokens=8,
        tool_choice="TOOL_CHOICE_AUTO",
        request_id=None,
        create_time=utcnow(),
        revision_id="",
        revision_create_time=None,
        delete_time=None,
        approval_required_tools=[],
        template="",
    )

    def insert_then_fail(tx: Tx) -> None:
        assert AGENTS.insert(tx, agent)
        raise RuntimeError("the unit of work breaks after its first write")

    try:
        with pytest.raises(RuntimeError):
            await db.write(tenant.id, insert_then_fail)
        stored = await db.read(tenant.id, AGENTS.find_all)
    finally:
        await db.close()
    assert stored == []


@pytest.mark.backends("postgres")
async def test_a_connection_the_server_dropped_costs_no_failed_call(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = agent_grpc.AgentServiceStub(channel)
        await stub.ListAgents(agent_pb.ListAgentsRequest(parent=tenant.name), metadata=tenant.metadata)
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE usename = 'orchestrall_app' AND pid <> pg_backend_pid()"
            ).fetchone()
        assert dropped is not None and dropped[0] > 0
        for _ in range(10):  # more calls than pooled connections: each dead one is replaced
            await stub.CreateAgent(
                agent_pb.CreateAgentRequest(parent=tenant.name, agent=agent_res.Agent(instructions="x")),
                metadata=tenant.metadata,
            )


def _flag(variant: str) -> flag_res.Flag:
    return flag_res.Flag(
        state=flag_res.Flag.STATE_ENABLED,
        variants={"on": struct_pb2.Value(bool_value=True), "off": struct_pb2.Value(bool_value=False)},
        default_variant=variant,
    )


async def test_a_flag_change_reaches_another_replica_within_a_second(mesh: Mesh) -> None:
    """Two flag service processes on one database: a change made through one is evaluated by the other."""
    tenant = await new_tenant(mesh)
    settings = FlagSettings(
        **mesh.config.settings("flag").model_copy(update={"tls_dir": mesh.tls_dir}).model_dump(),
        flag_poll_interval_seconds=0.2,
    ).model_copy(update={"listen": "127.0.0.1:0", "metrics_listen": None})
    replica = await start(*(await build_flag(settings)))
    name = f"{tenant.name}/flags/rollout"
    try:
        async with mesh.channel("flag") as first:
            writer = flag_grpc.FlagServiceStub(first)
            await writer.CreateFlag(
                flag_pb.CreateFlagRequest(parent=tenant.name, flag_id="rollout", flag=_flag("off")),
                metadata=tenant.metadata,
            )
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{replica.port}",
                mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "gateway")),
                options=[("grpc.ssl_target_name_override", "flag")],
            ) as second:
                reader = flag_grpc.FlagServiceStub(second)

                async def visible(value: bool) -> bool:
                    try:
                        seen = await reader.EvaluateFlag(
                            flag_pb.EvaluateFlagRequest(name=name), metadata=tenant.metadata
                        )
                    except grpc.aio.AioRpcError as error:  # created on the writer, not seen here yet
                        assert error.code() == grpc.StatusCode.NOT_FOUND
                        return False
                    return seen.value.bool_value is value

                async def within_a_second(value: bool) -> None:
                    changed = time.monotonic()
                    while not await visible(value):
                        assert time.monotonic() - changed < 1.0, "the change did not reach the replica in 1 s"
                        await asyncio.sleep(0.02)

                await within_a_second(False)
                for value, variant in ((True, "on"), (False, "off"), (True, "on")):
                    await writer.UpdateFlag(
                        flag_pb.UpdateFlagRequest(
                            flag=flag_res.Flag(name=name, default_variant=variant),
                            update_mask=field_mask_pb2.FieldMask(paths=["default_variant"]),
                        ),
                        metadata=tenant.metadata,
                    )
                    await within_a_second(value)
    finally:
        await replica.stop(0)
