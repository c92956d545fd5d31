"""Flag service: flagd definitions, evaluation reasons, update masks."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from tests.conftest import Mesh
from tests.service.helpers import field_violations, new_tenant


def flag(default: str = "basic", targeting: dict | None = None) -> res.Flag:
    message = res.Flag(
        state=res.Flag.STATE_ENABLED,
        variants={
            "basic": struct_pb2.Value(string_value="gpt-small"),
            "premium": struct_pb2.Value(string_value="gpt-large"),
        },
        default_variant=default,
    )
    if targeting is not None:
        message.targeting.update(targeting)
    return message


def context(**values: str) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


async def test_targeting_default_and_disabled(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    targeting = {"if": [{"==": [{"var": "plan"}, "enterprise"]}, "premium", None]}
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        created = await stub.CreateFlag(
            pb.CreateFlagRequest(parent=tenant.name, flag_id="model-tier", flag=flag(targeting=targeting)),
            metadata=tenant.metadata,
        )
        assert created.name == f"{tenant.name}/flags/model-tier"
        matched = await stub.EvaluateFlag(
            pb.EvaluateFlagRequest(name=created.name, context=context(plan="enterprise")),
            metadata=tenant.metadata,
        )
        assert (matched.value.string_value, matched.variant, matched.reason) == (
            "gpt-large",
            "premium",
            "TARGETING_MATCH",
        )
        fallback = await stub.EvaluateFlag(
            pb.EvaluateFlagRequest(name=created.name, context=context(plan="free")), metadata=tenant.metadata
        )
        assert (fallback.variant, fallback.reason) == ("basic", "DEFAULT")
        disabled = await stub.UpdateFlag(
            pb.UpdateFlagRequest(
                flag=res.Flag(name=created.name, state=res.Flag.STATE_DISABLED),
                update_mask=field_mask_pb2.FieldMask(paths=["state"]),
            ),
            metadata=tenant.metadata,
        )
        assert disabled.state == res.Flag.STATE_DISABLED and disabled.default_variant == "basic"
        off = await stub.EvaluateFlag(pb.EvaluateFlagRequest(name=created.name), metadata=tenant.metadata)
        assert off.reason == "DISABLED" and not off.variant


async def test_invalid_definitions_write_nothing(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateFlag(
                pb.CreateFlagRequest(parent=tenant.name, flag_id="tier", flag=flag(default="gold")),
                metadata=tenant.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "flag.default_variant" in field_violations(caught.value)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UpdateFlag(
                pb.UpdateFlagRequest(
                    flag=res.Flag(name=f"{tenant.name}/flags/tier"), update_mask={"paths": ["colour"]}
                ),
                metadata=tenant.metadata,
            )
        assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        listed = await stub.ListFlags(pb.ListFlagsRequest(parent=tenant.name), metadata=tenant.metadata)
        assert not listed.flags
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.EvaluateFlag(
                pb.EvaluateFlagRequest(name=f"{tenant.name}/flags/tier"), metadata=tenant.metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
