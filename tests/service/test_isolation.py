"""Tenant isolation in depth: PostgreSQL row-level security under the stores' tenant filters.

The tests run with the ``mesh`` fixture's ``postgres`` backend only (``backends``
marker: SQLite has no row-level security); that backend fails under ``CI=true`` when
PostgreSQL is unreachable (``tests.conftest.postgres_or_skip``).
"""

from __future__ import annotations

import importlib

import pytest
from alembic import command
from sqlalchemy import Table, create_engine, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from orchestrall.billing.v1 import resources_pb2 as billing_res
from services.agent.models import Agent
from services.kit import migrate
from services.kit.config import SERVICES, MeshSettings
from services.kit.db import APP_ROLE, Database, Tx, app_url, connect_args, database_url, schema_name
from services.kit.repository import table_of
from services.kit.timestamps import utcnow
from tests.conftest import SCHEMA_PREFIX, Mesh
from tests.service.helpers import Tenant, new_tenant

pytestmark = pytest.mark.backends("postgres")
AGENTS = table_of(Agent)


def test_app_url_is_derived_only_from_a_lone_postgres_url() -> None:
    admin = "postgresql+psycopg://postgres:secret@db:5432/orchestrall"
    derived = app_url(MeshSettings(database_url=admin))
    assert derived == f"postgresql+psycopg://{APP_ROLE}@db:5432/orchestrall"
    both = MeshSettings(database_url="postgresql://app:pw@db/o", migration_database_url=admin)
    assert app_url(both) == "postgresql://app:pw@db/o"
    assert database_url(both, "agent", admin=True).username == "postgres"
    assert app_url(MeshSettings(database_url=None)) is None


async def create_agent(mesh: Mesh, tenant: Tenant, agent_id: str) -> None:
    async with mesh.channel("agent") as channel:
        await agent_grpc.AgentServiceStub(channel).CreateAgent(
            agent_pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id=agent_id,
                agent=agent_res.Agent(instructions="Answer briefly.", max_output_tokens=8),
            ),
            metadata=tenant.metadata,
        )


def _agents(tx: Tx) -> list[tuple[str, str, str]]:
    """Every agent row the transaction can see, without any tenant filter."""
    return [tuple(row) for row in tx.execute(select(AGENTS.c.tenant_id, AGENTS.c.id, AGENTS.c.display_name))]


async def test_services_connect_as_a_role_that_cannot_bypass_rls(agent_db: Database) -> None:
    query = text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    row = await agent_db.read(None, lambda tx: tuple(tx.execute(query).one()))
    assert row == (APP_ROLE, False, False)


async def test_a_query_without_a_tenant_filter_sees_only_the_bound_tenants_rows(
    mesh: Mesh, agent_db: Database
) -> None:
    first, second = await new_tenant(mesh, "iso-a"), await new_tenant(mesh, "iso-b")
    await create_agent(mesh, first, "alpha")
    await create_agent(mesh, second, "beta")
    await create_agent(mesh, second, "gamma")

    assert {(t, i) for t, i, _ in await agent_db.read(first.id, _agents)} == {(first.id, "alpha")}
    renamed = await agent_db.write(
        first.id, lambda tx: tx.execute(update(AGENTS).values(display_name="renamed")).rowcount
    )
    assert renamed == 1

    def plant(tx: Tx) -> None:
        tx.execute(
            insert(AGENTS).values(
                tenant_id=second.id,
                id="planted",
                display_name="",
                model="",
                instructions="x",
                tools=[],
                max_output_tokens=8,
                tool_choice="TOOL_CHOICE_AUTO",
                create_time=utcnow(),
            )
        )

    with pytest.raises(DBAPIError, match="row-level security"):
        await agent_db.write(first.id, plant)

    rows = await agent_db.read(second.id, _agents)
    assert {i for _, i, _ in rows} == {"beta", "gamma"}
    assert all(name != "renamed" for _, _, name in rows)
    assert {first.id, second.id} <= {t for t, _, _ in await agent_db.system(_agents)}


async def test_without_a_tenant_a_bare_select_returns_nothing(mesh: Mesh, agent_db: Database) -> None:
    await create_agent(mesh, await new_tenant(mesh, "iso-c"), "delta")
    assert await agent_db.read(None, _agents) == []
    runs = await agent_db.read(None, lambda tx: tx.execute(text("SELECT count(*) FROM runs")).scalar_one())
    assert runs == 0


async def test_one_ingestion_batch_may_hold_several_tenants(mesh: Mesh) -> None:
    first, second = await new_tenant(mesh, "iso-d"), await new_tenant(mesh, "iso-e")
    events = [
        billing_res.UsageEvent(
            id=event_id, source="//isolation", tenant=t.name, meter="agent_runs", quantity=1
        )
        for t, event_id in ((first, "1"), (second, "2"), (second, "3"), (first, "1"))
    ]
    async with mesh.channel("billing", identity="agent") as channel:
        stub = billing_grpc.BillingServiceStub(channel)
        answer = await stub.IngestUsageEvents(billing_pb.IngestUsageEventsRequest(events=events))
    assert (answer.accepted_count, answer.duplicate_count) == (3, 1)
    async with mesh.channel("billing") as channel:
        stub = billing_grpc.BillingServiceStub(channel)
        for tenant, runs in ((first, 1), (second, 2)):
            summary = await stub.GetUsageSummary(
                billing_pb.GetUsageSummaryRequest(name=f"{tenant.name}/usageSummary"),
                metadata=tenant.metadata,
            )
            assert {m.meter: m.quantity for m in summary.meters}["agent_runs"] == runs


def tenant_tables(service: str) -> list[Table]:
    """The service's tables that have a ``tenant_id`` column, from its models."""
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    return [table for table in metadata.sorted_tables if "tenant_id" in table.columns]


def isolation_state(settings: MeshSettings, service: str) -> dict[str, tuple[bool, bool, int]]:
    """Table -> (RLS enabled, RLS forced, tenant_isolation policies), read as the admin."""
    engine = create_engine(database_url(settings, service, admin=True))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
                    " (SELECT count(*) FROM pg_policies p WHERE p.schemaname = n.nspname"
                    "  AND p.tablename = c.relname AND p.policyname = 'tenant_isolation')"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = :schema AND c.relkind = 'r'"
                ),
                {"schema": schema_name(settings, service)},
            )
            return {name: (enabled, forced, policies) for name, enabled, forced, policies in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_every_tenant_owned_table_is_isolated(mesh: Mesh, service: str) -> None:
    state = isolation_state(mesh.config.settings(service), service)
    for table in tenant_tables(service):
        assert state[table.name] == (True, True, 1), f"{service}.{table.name} lacks row-level security"


def test_the_migration_downgrades_and_upgrades_again(mesh: Mesh) -> None:
    settings = mesh.config.settings("agent").model_copy(update={"schema_prefix": f"{SCHEMA_PREFIX}rls_"})
    admin = database_url(settings, "agent", admin=True)
    try:
        migrate.upgrade(settings, "agent")
        engine = create_engine(admin, connect_args=connect_args(settings, "agent"))
        with engine.begin() as connection:
            config = migrate.alembic_config("agent")
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        engine.dispose()
        assert isolation_state(settings, "agent") == {
            "agents": (False, False, 0),
            "runs": (False, False, 0),
            "alembic_version": (False, False, 0),
        }
        migrate.upgrade(settings, "agent")
        assert isolation_state(settings, "agent")["runs"] == (True, True, 1)
    finally:
        engine = create_engine(admin)
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name(settings, "agent")}" CASCADE'))
        engine.dispose()
