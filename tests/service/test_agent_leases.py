"""No run left behind: runs in progress are leased to their replica, and expired leases are swept.

A replica that dies stops renewing its leases; that is what a run planted here with an
executor that does not exist looks like. Agent replicas of this module run on an injected
clock the tests move, beside the mesh's own replica, on the same database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import store
from services.agent.models import RunRow, RunState
from services.kit.db import Database
from services.kit.names import new_id
from services.kit.server import RunningServer
from services.kit.timestamps import utcnow
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    extra_tool,
    hub_tool,
    new_tenant,
    run_to_end,
)

LEASE = 30.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


async def _replica(mesh: Mesh, model_url: str, clock: Clock, sweep_seconds: float) -> RunningServer:
    return await agent_replica(
        mesh,
        model_url,
        clock,
        run_lease_seconds=LEASE,
        run_heartbeat_seconds=0.05,
        run_sweep_seconds=sweep_seconds,
    )


@pytest.fixture
def held() -> Iterator[threading.Event]:
    """Released when the test ends: a tool that waits for it holds its run in progress."""
    released = threading.Event()
    with extra_tool(hub_tool("held_hub", lambda args: released.wait(60) and {"hub": "Rotterdam"})):
        try:
            yield released
        finally:
            released.set()


async def _agent(stub: pb_grpc.AgentServiceStub, tenant: Tenant) -> res.Agent:
    agent = res.Agent(
        instructions="Call the tool, then answer in one sentence.",
        tools=["tools/held_hub"],
        tool_choice=res.TOOL_CHOICE_REQUIRED,
        temperature=0,
        max_output_tokens=16,
    )
    return await stub.CreateAgent(
        pb.CreateAgentRequest(parent=tenant.name, agent=agent), metadata=tenant.metadata
    )


async def _plant(
    db: Database,
    tenant: Tenant,
    agent: res.Agent,
    lease_expire_time: dt.datetime,
    request_id: str | None = None,
) -> str:
    """A run in progress on a replica that has died; returns its name."""
    run = RunRow(
        tenant_id=tenant.id,
        id=new_id(),
        agent_id=agent.name.rsplit("/", 1)[1],
        input="Rotterdam?",
        output="",
        state=RunState.RUNNING,
        tool_calls=[],
        input_tokens=0,
        output_tokens=0,
        model_calls=0,
        model="smollm2",
        tools_enabled=True,
        error_reason="",
        error_message="",
        request_id=request_id,
        create_time=lease_expire_time - dt.timedelta(seconds=LEASE),
        end_time=None,
        executor="a-replica-that-died",
        lease_expire_time=lease_expire_time,
        agent_revision_id=agent.revision_id,
        thread_id="",
        last_sequence=0,
        checkpoint=None,
        pending_tool_calls=[],
        approval_request_id=None,
        cancel_time=None,
    )
    assert await db.write(tenant.id, store.RUNS.insert, run)
    return f"{agent.name}/runs/{run.id}"


def _reason(run: res.Run) -> str:
    info = error_details_pb2.ErrorInfo()
    assert run.error.details and run.error.details[0].Unpack(info)
    return info.reason


async def test_a_dead_replicas_run_is_swept_while_a_live_one_keeps_its_lease(
    mesh: Mesh, model_url: str, agent_db: Database, held: threading.Event
) -> None:
    clock = Clock()
    replica = await _replica(mesh, model_url, clock, sweep_seconds=0.05)
    tenant = await new_tenant(mesh)
    try:
        async with agent_channel(mesh, replica) as channel:
            stub = pb_grpc.AgentServiceStub(channel)
            agent = await _agent(stub, tenant)
            live = asyncio.ensure_future(
                run_to_end(
                    stub,
                    pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam?")),
                    metadata=tenant.metadata,
                )
            )
            while not (
                await stub.ListRuns(pb.ListRunsRequest(parent=agent.name), metadata=tenant.metadata)
            ).runs:
                await asyncio.sleep(0.05)
            dead = await _plant(agent_db, tenant, agent, clock() + dt.timedelta(seconds=LEASE))
            # Two lease lengths go by in steps shorter than a lease, with heartbeats in between.
            for _ in range(6):
                clock.advance(LEASE / 3)
                await asyncio.sleep(0.4)
            swept = await stub.GetRun(pb.GetRunRequest(name=dead), metadata=tenant.metadata)
            listed = await stub.ListRuns(pb.ListRunsRequest(parent=agent.name), metadata=tenant.metadata)
            still = next(r for r in listed.runs if r.name != dead)
            held.set()
            finished = await live
    finally:
        await replica.stop(0)
    assert swept.state == res.Run.STATE_FAILED and _reason(swept) == "RUN_INTERRUPTED"
    assert swept.error.code == grpc.StatusCode.ABORTED.value[0]
    assert swept.end_time.ToDatetime(dt.UTC) >= clock() - dt.timedelta(seconds=LEASE)
    assert still.state == res.Run.STATE_RUNNING, "its replica renewed its lease all along"
    assert finished.state == res.Run.STATE_SUCCEEDED and finished.name == still.name
    # The replica's metrics count both ends: the run it swept as failed, its own as succeeded.
    registry = replica.metrics.registry
    for state in ("failed", "succeeded"):
        labels = {"rpc_service": "agent", "state": state}
        assert registry.get_sample_value("orchestrall_agent_runs_ended_total", labels) == 1, state


async def test_start_up_sweeps_and_a_retry_of_an_expired_run_says_it_was_interrupted(
    mesh: Mesh, model_url: str, agent_db: Database, held: threading.Event
) -> None:
    clock = Clock()
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        agent = await _agent(pb_grpc.AgentServiceStub(channel), tenant)
    before_start = await _plant(agent_db, tenant, agent, clock() - dt.timedelta(seconds=1))
    replica = await _replica(mesh, model_url, clock, sweep_seconds=3600)  # no periodic sweep here
    try:
        async with agent_channel(mesh, replica) as channel:
            stub = pb_grpc.AgentServiceStub(channel)
            at_start = await stub.GetRun(pb.GetRunRequest(name=before_start), metadata=tenant.metadata)
            retried = await _plant(
                agent_db, tenant, agent, clock() + dt.timedelta(seconds=5), request_id="r-1"
            )
            retry = pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam?"), request_id="r-1")
            in_lease = await stub.CreateRun(retry, metadata=tenant.metadata)
            clock.advance(10)
            expired = await stub.CreateRun(retry, metadata=tenant.metadata)
    finally:
        await replica.stop(0)
    assert at_start.state == res.Run.STATE_FAILED and _reason(at_start) == "RUN_INTERRUPTED"
    assert in_lease.name == retried and in_lease.state == res.Run.STATE_RUNNING
    assert expired.name == retried and expired.state == res.Run.STATE_FAILED
    assert _reason(expired) == "RUN_INTERRUPTED"
    assert "new request_id" in expired.error.message
