"""Usage insight: evaluation counts by variant and reason over time, last evaluation, stale flags."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2 as v2
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from sqlalchemy import text

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.flag.server import FlagSettings, build
from services.kit import mtls
from services.kit.db import create_engine
from services.kit.server import RunningServer, start
from services.kit.timestamps import utcnow
from tests.conftest import Mesh
from tests.service.helpers import Tenant, field_violations, new_tenant

TARGETED = {"if": [{"==": [{"var": "plan"}, "enterprise"]}, "premium", None]}


def tier(targeting: dict | None = None) -> res.Flag:
    message = res.Flag(
        state=res.Flag.STATE_ENABLED,
        variants={"basic": struct_pb2.Value(string_value="s"), "premium": struct_pb2.Value(string_value="l")},
        default_variant="basic",
    )
    if targeting:
        message.targeting.update(targeting)
    return message


def plan(name: str) -> struct_pb2.Struct:
    context = struct_pb2.Struct()
    context.update({"plan": name})
    return context


async def create(stub: pb_grpc.FlagServiceStub, tenant: Tenant, key: str, flag: res.Flag) -> str:
    created = await stub.CreateFlag(
        pb.CreateFlagRequest(parent=tenant.name, flag_id=key, flag=flag), metadata=tenant.metadata
    )
    return str(created.name)


def totals(usage: res.FlagUsage) -> dict[tuple[str, str], int]:
    return {(item.variant, item.reason): item.count for item in usage.totals}


async def test_counts_by_variant_and_reason_show_at_once_on_the_replica_that_evaluated(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    before = utcnow()
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        name = await create(stub, tenant, "tier", tier(TARGETED))
        never = await stub.GetFlagUsage(
            pb.GetFlagUsageRequest(name=f"{name}/usage"), metadata=tenant.metadata
        )
        assert not never.HasField("last_evaluate_time") and not never.counts
        for customer in ("enterprise", "enterprise", "free", "free"):
            await stub.EvaluateFlag(
                pb.EvaluateFlagRequest(name=name, context=plan(customer)), metadata=tenant.metadata
            )
        await v2_grpc.ServiceStub(channel).ResolveString(
            v2.ResolveStringRequest(flag_key="tier", context=plan("free")), metadata=tenant.metadata
        )
        with pytest.raises(grpc.aio.AioRpcError):  # a type mismatch is an evaluation too, reason ERROR
            await v2_grpc.ServiceStub(channel).ResolveBoolean(
                v2.ResolveBooleanRequest(flag_key="tier"), metadata=tenant.metadata
            )
        usage = await stub.GetFlagUsage(
            pb.GetFlagUsageRequest(name=f"{name}/usage"), metadata=tenant.metadata
        )
    assert totals(usage) == {("basic", "DEFAULT"): 3, ("premium", "TARGETING_MATCH"): 2, ("", "ERROR"): 1}
    assert [(t.variant, t.reason) for t in usage.totals][0] == ("basic", "DEFAULT")  # most first
    hour = before.replace(minute=0, second=0, microsecond=0)
    assert {c.start_time.ToDatetime(dt.UTC) for c in usage.counts} <= {hour, hour + dt.timedelta(hours=1)}
    assert sum(c.count for c in usage.counts) == 6
    assert before <= usage.last_evaluate_time.ToDatetime(dt.UTC) <= utcnow()
    assert usage.end_time.ToDatetime(dt.UTC) - usage.start_time.ToDatetime(dt.UTC) == dt.timedelta(hours=24)


async def test_usage_windows_are_bounded_and_flags_must_exist(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    now = int(time.time())
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        name = await create(stub, tenant, "tier", tier())
        for start, end, field in ((now, now - 7200, "start_time"), (now - 8 * 86400, now, "end_time")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetFlagUsage(
                    pb.GetFlagUsageRequest(
                        name=f"{name}/usage",
                        start_time=timestamp_pb2.Timestamp(seconds=start),
                        end_time=timestamp_pb2.Timestamp(seconds=end),
                    ),
                    metadata=tenant.metadata,
                )
            assert field_violations(caught.value) == [field]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetFlagUsage(
                pb.GetFlagUsageRequest(name=f"{tenant.name}/flags/none/usage"), metadata=tenant.metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stale_flags_are_the_unevaluated_and_the_single_variant_ones(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        targeted = await create(stub, tenant, "targeted", tier(TARGETED))
        constant = await create(stub, tenant, "constant", tier())
        await create(stub, tenant, "forgotten", tier())
        await create(stub, tenant, "brand-new", tier())
        for customer in ("enterprise", "free"):
            await stub.EvaluateFlag(
                pb.EvaluateFlagRequest(name=targeted, context=plan(customer)), metadata=tenant.metadata
            )
        for _ in range(3):
            await stub.EvaluateFlag(pb.EvaluateFlagRequest(name=constant), metadata=tenant.metadata)
        # "forgotten" was created 40 days ago (its row is dated back; nothing else about it changes).
        engine = create_engine(mesh.config.settings("flag"), "flag", admin=True)
        try:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE flags SET create_time = :then WHERE tenant_id = :tenant AND key = 'forgotten'"
                    ),
                    {"then": utcnow() - dt.timedelta(days=40), "tenant": tenant.id},
                )
        finally:
            engine.dispose()
        report = await stub.ReportStaleFlags(
            pb.ReportStaleFlagsRequest(parent=tenant.name, days=30), metadata=tenant.metadata
        )
    found = {(s.flag.rsplit("/", 1)[1], s.reason, s.variant, s.evaluation_count) for s in report.stale_flags}
    assert found == {
        ("constant", pb.StaleFlag.REASON_ONE_VARIANT, "basic", 3),
        ("forgotten", pb.StaleFlag.REASON_NOT_EVALUATED, "", 0),
    }
    assert [s.flag.rsplit("/", 1)[1] for s in report.stale_flags] == ["constant", "forgotten"]


@pytest.fixture
async def quick_replica(mesh: Mesh) -> AsyncIterator[RunningServer]:
    """Another flag replica on the same database that writes its counts every 0.1 s."""
    base = mesh.config.settings("flag").model_copy(
        update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    )
    settings = FlagSettings(**{**base.model_dump(), "flag_usage_flush_seconds": 0.1})
    server = await start(*(await build(settings)))
    yield server
    await server.stop(0)


async def test_a_replicas_counts_reach_the_others_and_add_up(
    mesh: Mesh, quick_replica: RunningServer
) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        name = await create(pb_grpc.FlagServiceStub(channel), tenant, "tier", tier())
    quick = grpc.aio.secure_channel(
        f"127.0.0.1:{quick_replica.port}",
        mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "gateway")),
        options=[("grpc.ssl_target_name_override", "flag")],
    )
    async with quick:
        replica = pb_grpc.FlagServiceStub(quick)
        for _ in range(50):  # the replica loads the new flag within its poll interval
            try:
                await replica.EvaluateFlag(pb.EvaluateFlagRequest(name=name), metadata=tenant.metadata)
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
                await asyncio.sleep(0.05)
        for _ in range(4):
            await replica.EvaluateFlag(pb.EvaluateFlagRequest(name=name), metadata=tenant.metadata)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        await stub.EvaluateFlag(pb.EvaluateFlagRequest(name=name), metadata=tenant.metadata)
        seen: dict[tuple[str, str], int] = {}
        for _ in range(100):  # the other replica's counts arrive with its next flush
            usage = await stub.GetFlagUsage(
                pb.GetFlagUsageRequest(name=f"{name}/usage"), metadata=tenant.metadata
            )
            seen = totals(usage)
            if seen == {("basic", "STATIC"): 6}:
                break
            await asyncio.sleep(0.05)
    assert seen == {("basic", "STATIC"): 6}


async def test_a_flag_created_again_starts_counting_afresh(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        name = await create(stub, tenant, "tier", tier())
        for _ in range(2):
            await stub.EvaluateFlag(pb.EvaluateFlagRequest(name=name), metadata=tenant.metadata)
        await stub.DeleteFlag(pb.DeleteFlagRequest(name=name), metadata=tenant.metadata)
        await create(stub, tenant, "tier", tier())
        usage = await stub.GetFlagUsage(
            pb.GetFlagUsageRequest(name=f"{name}/usage"), metadata=tenant.metadata
        )
        assert not usage.totals and not usage.HasField("last_evaluate_time")
        await stub.EvaluateFlag(pb.EvaluateFlagRequest(name=name), metadata=tenant.metadata)
        usage = await stub.GetFlagUsage(
            pb.GetFlagUsageRequest(name=f"{name}/usage"), metadata=tenant.metadata
        )
        assert totals(usage) == {("basic", "STATIC"): 1}
        report = await stub.ReportStaleFlags(
            pb.ReportStaleFlagsRequest(parent=tenant.name), metadata=tenant.metadata
        )
        assert [(s.reason, s.evaluation_count) for s in report.stale_flags] == [
            (pb.StaleFlag.REASON_ONE_VARIANT, 1)
        ]
