"""Every model call, tool call and run is metered exactly once, with what the run recorded.

Runs go through the real agent and billing servers with the real model server. The
usage outbox is read in the agent's database; deliveries are made again by hand
(as a relay that died after sending, and a second replica's relay, would make them)
to show that billing counts each event once however often it arrives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import MetaData, select

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from services.agent import metering, store
from services.agent.models import USAGE_OUTBOX, RunEventRow, RunRow, RunState
from services.agent.peers import Peers
from services.billing.plans import period_of
from services.kit.clients import MeshClients
from services.kit.db import Database, Tx
from services.kit.names import new_id
from services.kit.outbox import OutboxRelay
from services.kit.timestamps import utcnow
from services.kit.usage import deliver_to_billing, outbox_table
from tests.conftest import Mesh
from tests.service.helpers import Tenant, new_tenant, run_to_end
from tests.service.test_agent import PLANNER

METERS = ("agent_runs", "model_calls", "model_input_tokens", "model_output_tokens", "tool_calls")


def _stamp(instant: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


async def metered(mesh: Mesh, tenant: Tenant, meter: str, group_by: tuple[str, ...] = ()) -> dict[str, float]:
    """The tenant's usage of a built-in meter this period (``QueryUsage``), by group values joined."""
    start, end = period_of(utcnow())
    request = billing_pb.QueryUsageRequest(
        name=f"{tenant.name}/meters/{meter}",
        start_time=_stamp(start),
        end_time=_stamp(end),
        group_by=group_by,
    )
    async with mesh.channel("billing") as channel:
        answer = await billing_grpc.BillingServiceStub(channel).QueryUsage(request, metadata=tenant.metadata)
    return {"|".join(w.group_by[k] for k in group_by): w.value for w in answer.windows}


async def usage(mesh: Mesh, tenant: Tenant) -> dict[str, float]:
    """The tenant's usage of every built-in meter this period, meter to quantity."""
    found = await asyncio.gather(*(metered(mesh, tenant, meter) for meter in METERS))
    return {meter: by_group.get("", 0.0) for meter, by_group in zip(METERS, found, strict=True)}


def recorded(runs: list[res.Run], events: dict[str, list[res.RunEvent]]) -> dict[str, float]:
    """What the runs record, as the built-in meters count it."""
    calls = [e.model_call for run in runs for e in events[run.name] if e.WhichOneof("event") == "model_call"]
    finished = [e for run in runs for e in events[run.name] if e.WhichOneof("event") == "tool_call_finished"]
    assert sum(c.input_tokens for c in calls) == sum(r.usage.input_tokens for r in runs)
    assert sum(c.output_tokens for c in calls) == sum(r.usage.output_tokens for r in runs)
    assert len(calls) == sum(r.usage.model_calls for r in runs)
    return {
        "agent_runs": len(runs),
        "model_calls": len(calls),
        "model_input_tokens": sum(c.input_tokens for c in calls),
        "model_output_tokens": sum(c.output_tokens for c in calls),
        "tool_calls": len(finished),
    }


def _outbox_of(tx: Tx, tenant_id: str) -> list[dict[str, Any]]:
    query = select(USAGE_OUTBOX).where(USAGE_OUTBOX.c.tenant_id == tenant_id).order_by(USAGE_OUTBOX.c.time)
    return [dict(row._mapping) for row in tx.execute(query)]


async def relayed(db: Database, tenant_id: str) -> None:
    """Waits until the service's relay has taken the tenant's usage events out of the outbox."""
    for _ in range(200):
        if not await db.read(tenant_id, _outbox_of, tenant_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the usage outbox was not relayed")


def _run_row(tx: Tx, run_id: str) -> RunRow | None:
    return store.RUNS.get(tx, run_id)


async def test_runs_are_metered_once_by_model_with_what_they_recorded_however_often_delivered(
    mesh: Mesh, agent_db: Database
) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=tenant.name, agent=PLANNER, agent_id="planner"),
            metadata=tenant.metadata,
        )
        runs = [
            await run_to_end(
                stub,
                pb.CreateRunRequest(
                    parent=agent.name, run=res.Run(input=f"Distance from Rotterdam to {city}?")
                ),
                tenant.metadata,
            )
            for city in ("Berlin", "Vienna")
        ]
        events = {
            run.name: [
                e
                async for e in stub.StreamRunEvents(
                    pb.StreamRunEventsRequest(name=run.name), metadata=tenant.metadata
                )
            ]
            for run in runs
        }
    assert [run.state for run in runs] == [res.Run.STATE_SUCCEEDED] * 2
    expected = recorded(runs, events)
    assert expected["tool_calls"] >= 2 and expected["model_calls"] >= 4, expected
    await relayed(agent_db, tenant.id)
    assert await usage(mesh, tenant) == expected

    # Delivered again, twice, as relays that died after sending deliver them: nothing more counts.
    rows = []
    for run in runs:
        stored = await agent_db.read(tenant.id, _run_row, run.name.rsplit("/", 1)[1])
        assert stored is not None and stored.principal, "the run names who started it"
        rows += [metering.run_started(stored), *metering.usage_of_events(stored, events[run.name])]
    clients = MeshClients(mesh.config.settings("agent").model_copy(update={"tls_dir": mesh.tls_dir}), "agent")
    try:
        deliver = deliver_to_billing(lambda: clients.channel("billing"), clients.timeout)
        again = [dict(row) for row in rows]
        await asyncio.gather(deliver(again), deliver(again))
        # And a settlement carrying them again (a retried one) records nothing more either.
        peers = Peers(clients)
        for run in runs:
            run_id = run.name.rsplit("/", 1)[1]
            mine = [r for r in rows if r["subject"] == run.name]
            assert await peers.settle(tenant.id, run_id, run.name, mine)
    finally:
        await clients.close()
    assert await usage(mesh, tenant) == expected

    # The built-in token meters group by model, agent and principal.
    by_model = await metered(mesh, tenant, "model_output_tokens", ("model", "agent"))
    assert by_model == {f"smollm2|{agent.name}": expected["model_output_tokens"]}
    principals = await metered(mesh, tenant, "agent_runs", ("principal",))
    assert list(principals.values()) == [2.0] and list(principals)[0], principals


def _run(tenant: Tenant, agent_id: str, revision_id: str, create_time: dt.datetime, executor: str) -> RunRow:
    return RunRow(
        tenant_id=tenant.id,
        id=new_id(),
        agent_id=agent_id,
        input="Rotterdam?",
        output="",
        state=RunState.RUNNING,
        tool_calls=[],
        input_tokens=0,
        output_tokens=0,
        model_calls=0,
        model="smollm2",
        tools_enabled=False,
        error_reason="",
        error_message="",
        request_id=None,
        create_time=create_time,
        end_time=None,
        executor=executor,
        lease_expire_time=create_time + dt.timedelta(seconds=30),
        agent_revision_id=revision_id,
        thread_id="",
        last_sequence=0,
        checkpoint=None,
        pending_tool_calls=[],
        approval_request_id=None,
        cancel_time=None,
        principal="apiKeys/k-1",
    )


def _model_call(sequence: int, input_tokens: int, output_tokens: int) -> res.RunEvent:
    event = res.RunEvent(
        sequence=sequence,
        model_call=res.ModelCall(model="smollm2", input_tokens=input_tokens, output_tokens=output_tokens),
    )
    event.create_time.FromDatetime(utcnow())
    return event


def _stored(events: list[res.RunEvent], run: RunRow) -> list[RunEventRow]:
    return [RunEventRow(run.tenant_id, run.id, e.sequence, e.SerializeToString()) for e in events]


async def test_a_relay_that_dies_after_delivering_delivers_again_and_billing_counts_once(
    mesh: Mesh, tmp_path: Path
) -> None:
    tenant = await new_tenant(mesh)
    # An outbox of its own (no service relays it), so this relay alone delivers it.
    metadata = MetaData()
    table = outbox_table(metadata)
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    metadata.create_all(engine)
    db = Database(engine)
    run = _run(tenant, "a", "", utcnow(), "x")
    rows = [metering.run_started(run), *metering.usage_of_events(run, [_model_call(2, 11, 5)])]
    await db.write(tenant.id, lambda tx: tx.execute(table.insert(), rows))
    clients = MeshClients(mesh.config.settings("agent").model_copy(update={"tls_dir": mesh.tls_dir}), "agent")
    deliver = deliver_to_billing(lambda: clients.channel("billing"), clients.timeout)
    sent: list[int] = []

    async def deliver_then_die(batch: Any) -> None:
        await deliver(batch)
        sent.append(len(batch))
        raise ConnectionError("the relay's replica died before it deleted what it sent")

    try:
        with pytest.raises(ConnectionError):
            await OutboxRelay("usage-test", db, table, deliver_then_die).relay_once()
        assert sent == [4]  # the run, its model call and its two token counts
        assert await OutboxRelay("usage-test", db, table, deliver).drain() == 4  # sent again
        assert await OutboxRelay("usage-test", db, table, deliver).drain() == 0
    finally:
        await clients.close()
        await db.close()
    assert await usage(mesh, tenant) == {
        "agent_runs": 1,
        "model_calls": 1,
        "model_input_tokens": 11,
        "model_output_tokens": 5,
        "tool_calls": 0,
    }


async def test_a_run_whose_replica_died_is_metered_for_what_it_stored_once_swept(
    mesh: Mesh, agent_db: Database
) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=tenant.name, agent=PLANNER, agent_id="planner"),
            metadata=tenant.metadata,
        )
        # What a replica did before it was SIGKILLed: started the run, stored two model calls.
        started = utcnow() - dt.timedelta(minutes=5)
        run = _run(tenant, "planner", agent.revision_id, started, "a-replica-that-died")
        assert await agent_db.write(tenant.id, store.start_run, run, 100) == run
        calls = [_model_call(2, 30, 7), _model_call(3, 40, 9)]
        control = await agent_db.write(
            tenant.id, store.append_run_events, run, _stored(calls, run), metering.usage_of_events(run, calls)
        )
        assert control.owned
        # Its lease ran out long ago: a sweep fails it (this one, or the service's own sweeper
        # if it comes first, so the count is not asserted), and a second sweep changes nothing:
        # the run is failed and metered once.
        await agent_db.system(store.interrupt_expired, utcnow())
        await agent_db.system(store.interrupt_expired, utcnow())
        ended = await stub.GetRun(
            pb.GetRunRequest(name=f"{agent.name}/runs/{run.id}"), metadata=tenant.metadata
        )
    assert ended.state == res.Run.STATE_FAILED
    assert (ended.usage.input_tokens, ended.usage.output_tokens, ended.usage.model_calls) == (70, 16, 2)
    await relayed(agent_db, tenant.id)
    assert await usage(mesh, tenant) == {
        "agent_runs": 1,
        "model_calls": 2,
        "model_input_tokens": 70,
        "model_output_tokens": 16,
        "tool_calls": 0,
    }
