"""Billing reservations: parallel bursts never overshoot, settle records once, release and expiry free.

Every call goes through a real billing server over mTLS as the agent (the caller the
policy table names). Tests that move time use a second billing replica on an injected
clock, beside the mesh's own, on the same database; bursts are split over both
replicas, so the per-tenant lock is shown to hold across replicas too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.agent.peers import Peers, reservation_id
from services.billing.plans import FREE_LIMITS
from services.billing.server import build
from services.billing.store import RESERVATION_SOURCE
from services.kit import mtls
from services.kit.clients import MeshClients
from services.kit.errors import ResourceExhausted
from services.kit.names import new_id
from services.kit.server import RunningServer, start
from services.kit.timestamps import utcnow
from services.kit.usage import meter_event
from services.kit.usage import to_messages as usage_messages
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant

RUNS = "agent_runs"
OUTPUT = "model_output_tokens"
INPUT = "model_input_tokens"
ACTIVE, SETTLED, RELEASED, EXPIRED = (
    res.Reservation.STATE_ACTIVE,
    res.Reservation.STATE_SETTLED,
    res.Reservation.STATE_RELEASED,
    res.Reservation.STATE_EXPIRED,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def replica(mesh: Mesh, clock: Clock) -> AsyncIterator[RunningServer]:
    """A second billing replica on the mesh's database whose time is ``clock``."""
    settings = mesh.config.settings("billing").model_copy(
        update={
            "tls_dir": mesh.tls_dir,
            "listen": "127.0.0.1:0",
            "metrics_listen": None,
            "audit_relay_interval_seconds": 0.2,
        }
    )
    server = await start(*(await build(settings, clock=clock)))
    yield server
    await server.stop(0)


@pytest.fixture
async def billing(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    """The mesh's billing service, called as the agent."""
    async with mesh.channel("billing", identity="agent") as channel:
        yield pb_grpc.BillingServiceStub(channel)


@pytest.fixture
async def clocked(mesh: Mesh, replica: RunningServer) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    """The replica on the injected clock, called as the agent."""
    credentials = mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "agent"))
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{replica.port}", credentials, options=[("grpc.ssl_target_name_override", "billing")]
    ) as channel:
        yield pb_grpc.BillingServiceStub(channel)


def create(
    tenant: Tenant, reservation_id: str, quantities: dict[str, float] | None = None, ttl: int | None = None
) -> pb.CreateReservationRequest:
    reservation = res.Reservation(
        quantities=quantities, subject=f"{tenant.name}/agents/a/runs/{reservation_id}"
    )
    if ttl is not None:
        reservation.ttl.CopyFrom(duration_pb2.Duration(seconds=ttl))
    return pb.CreateReservationRequest(
        parent=tenant.name, reservation_id=reservation_id, reservation=reservation
    )


def name_of(tenant: Tenant, reservation_id: str) -> str:
    return f"{tenant.name}/reservations/{reservation_id}"


async def leave_only(stub: pb_grpc.BillingServiceStub, tenant: Tenant, meter: str, remaining: float) -> None:
    """Records usage so that ``remaining`` of the free plan's ``meter`` is left this period."""
    event = res.UsageEvent(
        id=f"pre-{meter}",
        source="//test",
        tenant=tenant.name,
        meter=meter,
        quantity=FREE_LIMITS[meter] - remaining,
    )
    await stub.IngestUsageEvents(pb.IngestUsageEventsRequest(events=[event]))


async def remaining(stub: pb_grpc.BillingServiceStub, tenant: Tenant, meter: str) -> float:
    answer = await stub.CheckEntitlement(
        pb.CheckEntitlementRequest(tenant=tenant.name, meter=meter, quantity=0)
    )
    return answer.remaining


async def usage(mesh: Mesh, tenant: Tenant) -> dict[str, tuple[float, int]]:
    """The tenant's usage summary of this period, as its admin reads it: meter to (quantity, events)."""
    async with mesh.channel("billing") as channel:
        summary = await pb_grpc.BillingServiceStub(channel).GetUsageSummary(
            pb.GetUsageSummaryRequest(name=f"{tenant.name}/usageSummary"), metadata=tenant.metadata
        )
    return {m.meter: (m.quantity, m.event_count) for m in summary.meters}


def quota_failure(error: grpc.aio.AioRpcError) -> error_details_pb2.QuotaFailure:
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    failure = error_details_pb2.QuotaFailure()
    assert any(detail.Unpack(failure) for detail in status.details), "no QuotaFailure"
    return failure


async def outcome(call: object) -> res.Reservation | grpc.aio.AioRpcError:
    try:
        return await call  # type: ignore[misc, no-any-return]
    except grpc.aio.AioRpcError as error:
        return error


async def test_a_parallel_burst_gets_exactly_what_fits_and_the_rest_quota_failures(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, clocked: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    await leave_only(billing, tenant, RUNS, 7)
    burst = 12
    # Half the burst to each replica, all at once: 7 // 2 = 3 fit.
    answers = await asyncio.gather(
        *(
            outcome((billing, clocked)[i % 2].CreateReservation(create(tenant, f"r-{i}", {RUNS: 2})))
            for i in range(burst)
        )
    )
    granted = [a for a in answers if isinstance(a, res.Reservation)]
    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(granted) == 3 and len(refused) == burst - 3
    assert all(r.state == ACTIVE and dict(r.quantities) == {RUNS: 2} for r in granted)
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(error).reason == "QUOTA_EXCEEDED"
        (violation,) = quota_failure(error).violations
        assert (violation.subject, violation.quota_metric, violation.quota_id) == (
            tenant.name,
            RUNS,
            f"free/{RUNS}",
        )
        assert violation.quota_value == FREE_LIMITS[RUNS]
    assert await remaining(billing, tenant, RUNS) == 1  # what the three hold counts as used


async def test_a_reservation_holds_every_meter_or_none(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    await leave_only(billing, tenant, OUTPUT, 100)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.CreateReservation(create(tenant, "both", {RUNS: 1, OUTPUT: 101}))
    assert [v.quota_metric for v in quota_failure(caught.value).violations] == [OUTPUT]
    assert await remaining(billing, tenant, RUNS) == FREE_LIMITS[RUNS], "agent_runs must not be held"
    fits = await billing.CreateReservation(create(tenant, "fits", {RUNS: 1, OUTPUT: 100}))
    assert fits.state == ACTIVE
    assert (await remaining(billing, tenant, RUNS), await remaining(billing, tenant, OUTPUT)) == (
        FREE_LIMITS[RUNS] - 1,
        0,
    )


async def test_a_retry_of_a_reservation_returns_the_first(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    await leave_only(billing, tenant, RUNS, 1)
    request = create(tenant, "once", {RUNS: 1})
    first, *retries = await asyncio.gather(*(billing.CreateReservation(request) for _ in range(4)))
    assert all(r == first for r in retries), "racing retries make one reservation"
    assert await billing.CreateReservation(request) == first  # the limit is reached, the retry still answers
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.CreateReservation(create(tenant, "once", {RUNS: 0.5}))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(caught.value).reason == "RESERVATION_ALREADY_EXISTS"


async def test_settle_records_the_usage_once_under_retries(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    made = await billing.CreateReservation(create(tenant, "run-1", {RUNS: 1, OUTPUT: 500}))
    held = await remaining(billing, tenant, OUTPUT)
    assert held == FREE_LIMITS[OUTPUT] - 500
    spent = {RUNS: 1, OUTPUT: 620, INPUT: 90}  # more output than reserved, and a meter not reserved
    settle = pb.SettleReservationRequest(name=made.name, quantities=spent)
    answers = await asyncio.gather(*(billing.SettleReservation(settle) for _ in range(5)))
    assert {a.state for a in answers} == {SETTLED}
    assert all(
        dict(a.settled_quantities) == spent and dict(a.quantities) == {RUNS: 1, OUTPUT: 500} for a in answers
    )
    again = await billing.SettleReservation(
        pb.SettleReservationRequest(name=made.name, quantities={OUTPUT: 1})
    )
    assert dict(again.settled_quantities) == spent, "a later settle returns the first one's usage"
    recorded = await usage(mesh, tenant)
    assert recorded[RUNS] == (1, 1) and recorded[OUTPUT] == (620, 1) and recorded[INPUT] == (90, 1)
    # The hold became the usage: 620 used, nothing held.
    assert await remaining(billing, tenant, OUTPUT) == FREE_LIMITS[OUTPUT] - 620
    # The usage events are the reservation's, so an ingestion of the same ones counts nothing more.
    duplicate = res.UsageEvent(
        id="run-1:model_output_tokens",
        source=RESERVATION_SOURCE,
        tenant=tenant.name,
        meter=OUTPUT,
        quantity=620,
    )
    answer = await billing.IngestUsageEvents(pb.IngestUsageEventsRequest(events=[duplicate]))
    assert (answer.accepted_count, answer.duplicate_count) == (0, 1)


async def test_release_frees_the_hold_and_each_close_is_final(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    await leave_only(billing, tenant, RUNS, 2)
    first = await billing.CreateReservation(create(tenant, "first", {RUNS: 2}))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.CreateReservation(create(tenant, "second", {RUNS: 2}))
    assert error_info(caught.value).reason == "QUOTA_EXCEEDED"
    released = [
        await billing.ReleaseReservation(pb.ReleaseReservationRequest(name=first.name)) for _ in range(2)
    ]
    assert [r.state for r in released] == [RELEASED, RELEASED] and released[0] == released[1]
    assert released[0].HasField("end_time") and not released[0].settled_quantities
    second = await billing.CreateReservation(create(tenant, "second", {RUNS: 2}))
    assert second.state == ACTIVE
    # Settle after release: nothing is recorded.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.SettleReservation(pb.SettleReservationRequest(name=first.name, quantities={RUNS: 2}))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "RESERVATION_RELEASED"
    assert (await usage(mesh, tenant))[RUNS] == (FREE_LIMITS[RUNS] - 2, 1)
    # Release after settle: the usage stays.
    await billing.SettleReservation(pb.SettleReservationRequest(name=second.name, quantities={RUNS: 2}))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.ReleaseReservation(pb.ReleaseReservationRequest(name=second.name))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "RESERVATION_SETTLED"
    assert (await usage(mesh, tenant))[RUNS] == (FREE_LIMITS[RUNS], 2)


async def test_expired_reservations_stop_counting(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, clocked: pb_grpc.BillingServiceStub, clock: Clock
) -> None:
    tenant = await new_tenant(mesh)
    await leave_only(billing, tenant, RUNS, 3)
    held = await clocked.CreateReservation(create(tenant, "slow", {RUNS: 3}, ttl=60))
    assert held.expire_time.ToDatetime(dt.UTC) == clock() + dt.timedelta(seconds=60)
    clock.advance(59)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clocked.CreateReservation(create(tenant, "next", {RUNS: 1}, ttl=60))
    assert error_info(caught.value).reason == "QUOTA_EXCEEDED"
    clock.advance(1)  # the instant it expires, with no sweep
    assert (await clocked.CreateReservation(create(tenant, "slow", {RUNS: 3}, ttl=60))).state == EXPIRED
    assert (await clocked.CreateReservation(create(tenant, "next", {RUNS: 3}, ttl=60))).state == ACTIVE
    # The work of an expired reservation did happen: settling it records the usage.
    late = await clocked.SettleReservation(pb.SettleReservationRequest(name=held.name, quantities={RUNS: 1}))
    assert late.state == SETTLED
    assert (await usage(mesh, tenant))[RUNS] == (FREE_LIMITS[RUNS] - 2, 2)
    # Releasing an expired one closes it without usage.
    clock.advance(3600)
    gone = await clocked.ReleaseReservation(pb.ReleaseReservationRequest(name=name_of(tenant, "next")))
    assert gone.state == RELEASED


async def test_another_tenants_reservation_is_not_found_and_untouched(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    victim, attacker = await new_tenant(mesh, "victim"), await new_tenant(mesh, "attacker")
    held = await billing.CreateReservation(create(victim, "run-v", {RUNS: 5}))
    for call in (
        billing.SettleReservation(
            pb.SettleReservationRequest(name=name_of(attacker, "run-v"), quantities={RUNS: 5})
        ),
        billing.ReleaseReservation(pb.ReleaseReservationRequest(name=name_of(attacker, "run-v"))),
    ):
        error = await outcome(call)
        assert isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(error).reason == "RESERVATION_NOT_FOUND"
    # The same ID is the attacker's own, separate reservation; the victim's stays as it was.
    own = await billing.CreateReservation(create(attacker, "run-v", {RUNS: 1}))
    assert own.name == name_of(attacker, "run-v") and dict(own.quantities) == {RUNS: 1}
    assert await billing.CreateReservation(create(victim, "run-v", {RUNS: 5})) == held
    assert await remaining(billing, victim, RUNS) == FREE_LIMITS[RUNS] - 5
    assert await remaining(billing, attacker, RUNS) == FREE_LIMITS[RUNS] - 1
    assert RUNS not in {m for m, (q, _) in (await usage(mesh, victim)).items() if q}


async def test_bad_input_gets_field_violations(mesh: Mesh, billing: pb_grpc.BillingServiceStub) -> None:
    tenant = await new_tenant(mesh)
    cases: list[tuple[object, str, list[str]]] = [
        (
            billing.CreateReservation(create(tenant, "r", {"gpu_hours": 1, RUNS: -1})),
            "UNKNOWN_METER",
            ['reservation.quantities["agent_runs"]', 'reservation.quantities["gpu_hours"]'],
        ),
        (
            billing.CreateReservation(create(tenant, "r", {OUTPUT: float("nan")})),
            "INVALID_ARGUMENT",
            ['reservation.quantities["model_output_tokens"]'],
        ),
        (
            billing.CreateReservation(create(tenant, "Not_An_Id", {RUNS: 1})),
            "INVALID_ARGUMENT",
            ["reservation_id"],
        ),
        (billing.CreateReservation(create(tenant, "r")), "INVALID_ARGUMENT", ["reservation.quantities"]),
        (
            billing.CreateReservation(create(tenant, "r", {RUNS: 1}, ttl=0)),
            "INVALID_ARGUMENT",
            ["reservation.ttl"],
        ),
        (
            billing.CreateReservation(create(tenant, "r", {RUNS: 1}, ttl=86401)),
            "INVALID_ARGUMENT",
            ["reservation.ttl"],
        ),
        (
            billing.CreateReservation(
                pb.CreateReservationRequest(
                    parent="acme", reservation_id="r", reservation=res.Reservation(quantities={RUNS: 1})
                )
            ),
            "INVALID_ARGUMENT",
            ["parent"],
        ),
        (
            billing.SettleReservation(pb.SettleReservationRequest(name=f"{tenant.name}/runs/r")),
            "INVALID_ARGUMENT",
            ["name"],
        ),
        (
            billing.SettleReservation(
                pb.SettleReservationRequest(
                    name=name_of(tenant, "r"),
                    usage_events=[
                        res.UsageEvent(
                            id="1", source="//s", tenant="tenants/someone-else", meter=RUNS, quantity=1
                        ),
                        res.UsageEvent(source="//s", tenant=tenant.name, meter=RUNS, quantity=1),
                    ],
                )
            ),
            "INVALID_USAGE_EVENTS",
            ["usage_events[1].id"],
        ),
        (
            billing.SettleReservation(
                pb.SettleReservationRequest(
                    name=name_of(tenant, "r"),
                    usage_events=[
                        res.UsageEvent(id="1", source="//s", tenant="tenants/someone-else", meter=RUNS)
                    ],
                )
            ),
            "INVALID_USAGE_EVENTS",
            ["usage_events[0].tenant"],
        ),
        (
            billing.SettleReservation(
                pb.SettleReservationRequest(
                    name=name_of(tenant, "r"),
                    quantities={RUNS: 1},
                    usage_events=[res.UsageEvent(id="1", source="//s", tenant=tenant.name, meter=RUNS)],
                )
            ),
            "INVALID_ARGUMENT",
            ["usage_events"],
        ),
        (
            billing.SettleReservation(
                pb.SettleReservationRequest(name=name_of(tenant, "r"), quantities={RUNS: float("inf")})
            ),
            "INVALID_ARGUMENT",
            ['quantities["agent_runs"]'],
        ),
        (billing.ReleaseReservation(pb.ReleaseReservationRequest()), "INVALID_ARGUMENT", ["name"]),
    ]
    for call, reason, fields in cases:
        error = await outcome(call)
        assert isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.INVALID_ARGUMENT, (
            fields
        )
        assert error_info(error).reason == reason, fields
        assert field_violations(error) == fields
    assert await remaining(billing, tenant, RUNS) == FREE_LIMITS[RUNS], "nothing was held"


@pytest.fixture
async def peers(mesh: Mesh) -> AsyncIterator[Peers]:
    """The agent service's billing calls, on the agent's identity, as the agent makes them."""
    clients = MeshClients(mesh.config.settings("agent").model_copy(update={"tls_dir": mesh.tls_dir}), "agent")
    yield Peers(clients)
    await clients.close()


async def test_the_agents_helpers_hold_a_run_settle_it_once_and_never_lose_usage(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, peers: Peers
) -> None:
    tenant = await new_tenant(mesh)
    await leave_only(billing, tenant, RUNS, 1)
    run_id, run_name = new_id(), f"{tenant.name}/agents/a/runs/x"
    name = await peers.reserve(tenant.id, run_id, run_name, {RUNS: 1, OUTPUT: 300}, ttl_seconds=310.5)
    assert name == name_of(tenant, reservation_id(run_id))
    assert name == await peers.reserve(tenant.id, run_id, run_name, {RUNS: 1, OUTPUT: 300}, ttl_seconds=310.5)
    with pytest.raises(ResourceExhausted) as refused:
        await peers.reserve(tenant.id, new_id(), run_name, {RUNS: 1}, ttl_seconds=60)
    assert refused.value.reason == "QUOTA_EXCEEDED" and refused.value.metadata["meter"] == RUNS
    now = utcnow()
    spent = [
        meter_event(
            tenant.id, f"//agent.orchestrall.dev/{run_name}", f"{step}/{meter}", meter, q, run_name, now, {}
        )
        for step, meter, q in (("run", RUNS, 1), ("model-call/2", OUTPUT, 120), ("model-call/2", INPUT, 80))
    ]
    assert await peers.settle(tenant.id, run_id, run_name, spent)
    assert await peers.settle(tenant.id, run_id, run_name, spent)  # a retry records nothing more
    assert await peers.release(tenant.id, run_id)  # settled: nothing is held either way
    assert (await usage(mesh, tenant))[OUTPUT] == (120, 1)
    # The same events ingested again (the usage outbox's relay delivers them too) count once.
    answer = await billing.IngestUsageEvents(pb.IngestUsageEventsRequest(events=usage_messages(spent)))
    assert (answer.accepted_count, answer.duplicate_count) == (0, 3)
    assert (await usage(mesh, tenant))[OUTPUT] == (120, 1)
    # A hold released before its settlement (a cancel that raced the finish) records nothing: the
    # outbox meters that usage.
    other = new_id()
    await peers.reserve(tenant.id, other, run_name, {OUTPUT: 50}, ttl_seconds=60)
    assert await peers.release(tenant.id, other) and await peers.release(tenant.id, other)
    assert await peers.settle(tenant.id, other, run_name, spent)
    assert (await usage(mesh, tenant))[OUTPUT] == (120, 1)
