"""Several flag sets per tenant: flagd's flagSetId, chosen by a provider's selector."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as v1
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2 as v2
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from tests.conftest import Mesh
from tests.service.helpers import Tenant, field_violations, new_tenant
from tests.service.test_flag_documents import body, export


def switch(flag_set: str = "") -> res.Flag:
    return res.Flag(
        state=res.Flag.STATE_ENABLED,
        variants={"on": struct_pb2.Value(bool_value=True), "off": struct_pb2.Value(bool_value=False)},
        default_variant="on",
        flag_set=flag_set,
    )


async def seeded(mesh: Mesh) -> Tenant:
    """A tenant with `web-only` in set `web`, `mobile-only` in `sso/mobile` and `everywhere` in none."""
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        for key, flag_set in (("web-only", "web"), ("mobile-only", "sso/mobile"), ("everywhere", "")):
            await stub.CreateFlag(
                pb.CreateFlagRequest(parent=tenant.name, flag_id=key, flag=switch(flag_set)),
                metadata=tenant.metadata,
            )
    return tenant


def selecting(tenant: Tenant, selector: str) -> tuple[tuple[str, str], ...]:
    return (*tenant.metadata, ("flagd-selector", selector))


async def test_a_selector_limits_evaluations_to_its_flag_set(mesh: Mesh) -> None:
    tenant = await seeded(mesh)
    async with mesh.channel("flag") as channel:
        evaluation = v2_grpc.ServiceStub(channel)
        for selector in ("flagSetId=sso/mobile", "sso/mobile"):
            found = await evaluation.ResolveBoolean(
                v2.ResolveBooleanRequest(flag_key="mobile-only"), metadata=selecting(tenant, selector)
            )
            assert (found.value, found.reason) == (True, "STATIC")
            for other in ("web-only", "everywhere"):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await evaluation.ResolveBoolean(
                        v2.ResolveBooleanRequest(flag_key=other), metadata=selecting(tenant, selector)
                    )
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # flagd's FLAG_NOT_FOUND
        unselected = await evaluation.ResolveBoolean(
            v2.ResolveBooleanRequest(flag_key="web-only"), metadata=tenant.metadata
        )
        assert unselected.value is True
        every = await v1_grpc.ServiceStub(channel).ResolveAll(
            v1.ResolveAllRequest(), metadata=tenant.metadata
        )
        assert set(every.flags) == {"web-only", "mobile-only", "everywhere"}
        web = await v1_grpc.ServiceStub(channel).ResolveAll(
            v1.ResolveAllRequest(), metadata=selecting(tenant, "flagSetId=web")
        )
        assert set(web.flags) == {"web-only"}


async def test_a_selector_limits_what_is_synced(mesh: Mesh) -> None:
    tenant = await seeded(mesh)
    async with mesh.channel("flag") as channel:
        sync = sync_pb2_grpc.FlagSyncServiceStub(channel)
        by_field = await sync.FetchAllFlags(
            sync_pb2.FetchAllFlagsRequest(selector="web"), metadata=tenant.metadata
        )
        by_header = await sync.FetchAllFlags(
            sync_pb2.FetchAllFlagsRequest(), metadata=selecting(tenant, "flagSetId=web")
        )
        everything = await sync.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(), metadata=tenant.metadata)
        stream = sync.SyncFlags(sync_pb2.SyncFlagsRequest(selector="sso/mobile"), metadata=tenant.metadata)
        first = await stream.read()
        stream.cancel()
    web: dict[str, Any] = json.loads(by_field.flag_configuration)
    assert web == json.loads(by_header.flag_configuration)
    assert set(web["flags"]) == {"web-only"} and web["metadata"] == {"flagSetId": "web"}
    assert web["flags"]["web-only"]["metadata"] == {"flagSetId": "web"}
    assert set(json.loads(everything.flag_configuration)["flags"]) == {
        "web-only",
        "mobile-only",
        "everywhere",
    }
    assert set(json.loads(first.flag_configuration)["flags"]) == {"mobile-only"}


async def test_flag_sets_are_checked_revised_exported_and_imported(mesh: Mesh) -> None:
    tenant = await seeded(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateFlag(
                pb.CreateFlagRequest(parent=tenant.name, flag_id="bad", flag=switch("a,b")),
                metadata=tenant.metadata,
            )
        assert field_violations(caught.value) == ["flag.flag_set"]
        moved = await stub.UpdateFlag(
            pb.UpdateFlagRequest(
                flag=res.Flag(name=f"{tenant.name}/flags/everywhere", flag_set="web"),
                update_mask=field_mask_pb2.FieldMask(paths=["flag_set"]),
            ),
            metadata=tenant.metadata,
        )
        assert moved.flag_set == "web"
        history = await stub.ListFlagRevisions(
            pb.ListFlagRevisionsRequest(parent=moved.name), metadata=tenant.metadata
        )
        assert [json_format.MessageToDict(op) for op in history.flag_revisions[0].diff] == [
            {"op": "add", "path": "/metadata", "value": {"flagSetId": "web"}}
        ]
        exported = await stub.ExportFlags(
            pb.ExportFlagsRequest(parent=tenant.name, flag_set="web"), metadata=tenant.metadata
        )
        web = json.loads(exported.data)
        assert web["metadata"] == {"flagSetId": "web"} and set(web["flags"]) == {"everywhere", "web-only"}

        # A document of set "web" replaces that set's flags and leaves the others alone.
        document = {
            "metadata": {"flagSetId": "web"},
            "flags": {"web-new": {"state": "ENABLED", "variants": {"a": "x"}, "defaultVariant": "a"}},
        }
        answer = await stub.ImportFlags(
            pb.ImportFlagsRequest(parent=tenant.name, body=body(document), delete_missing=True),
            metadata=tenant.metadata,
        )
        assert sorted(answer.deleted_flags) == [
            f"{tenant.name}/flags/everywhere",
            f"{tenant.name}/flags/web-only",
        ]
        flags = (await export(stub, tenant))["flags"]
        assert set(flags) == {"mobile-only", "web-new"}
        assert flags["web-new"]["metadata"] == {"flagSetId": "web"}
