"""flagd flag-definition documents: ImportFlags (schema, $evaluators, all or nothing) and ExportFlags."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.flag import schema
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant
from tests.service.test_flag_revisions import subject
from tests.service.test_principals import delivered

Action = res.FlagRevision.Action

#: A document as flagd users write them: camelCase keys, a shared rule, metadata, an array-free map.
DOCUMENT: dict[str, Any] = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "metadata": {"flagSetId": "shop", "version": "7"},
    "$evaluators": {
        "acmeEmail": {"ends_with": [{"var": "email"}, "@acme.example"]},
        "isStaff": {"or": [{"$ref": "acmeEmail"}, {"==": [{"var": "role"}, "staff"]}]},
    },
    "flags": {
        "newCheckout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"$ref": "isStaff"}, "on", "off"]},
            "metadata": {"description": "the new checkout", "owner": "shop-team"},
        },
        "pageSize": {"state": "ENABLED", "variants": {"small": 10, "large": 100}, "defaultVariant": "small"},
        "banner": {
            "state": "DISABLED",
            "variants": {"plain": "Hello", "sale": "Sale!"},
            "defaultVariant": "plain",
            "targeting": {"if": [{"$ref": "acmeEmail"}, "sale", None]},
        },
    },
}
STAFF_RULE = {
    "if": [
        {"or": [{"ends_with": [{"var": "email"}, "@acme.example"]}, {"==": [{"var": "role"}, "staff"]}]},
        "on",
        "off",
    ]
}


def body(document: Any) -> httpbody_pb2.HttpBody:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    return httpbody_pb2.HttpBody(content_type="application/json", data=data)


async def import_document(
    stub: pb_grpc.FlagServiceStub, tenant: Tenant, document: Any, **fields: Any
) -> pb.ImportFlagsResponse:
    request = pb.ImportFlagsRequest(parent=tenant.name, body=body(document), **fields)
    answer: pb.ImportFlagsResponse = await stub.ImportFlags(request, metadata=tenant.metadata)
    return answer


async def export(stub: pb_grpc.FlagServiceStub, tenant: Tenant) -> dict[str, Any]:
    answer = await stub.ExportFlags(pb.ExportFlagsRequest(parent=tenant.name), metadata=tenant.metadata)
    assert answer.content_type == "application/json"
    exported: dict[str, Any] = json.loads(answer.data)
    return exported


async def test_import_resolves_evaluators_and_a_retry_changes_nothing(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    request_id = str(uuid.uuid4())
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        answer = await import_document(stub, tenant, DOCUMENT, request_id=request_id)
        names = [f"{tenant.name}/flags/{key}" for key in ("banner", "newCheckout", "pageSize")]
        assert list(answer.created_flags) == names and not answer.updated_flags and not answer.deleted_flags
        checkout = await stub.GetFlag(pb.GetFlagRequest(name=names[1]), metadata=tenant.metadata)
        assert json_format.MessageToDict(checkout.targeting) == STAFF_RULE
        assert checkout.description == "the new checkout"
        context = struct_pb2.Struct()
        context.update({"email": "ann@acme.example"})
        staff = await stub.EvaluateFlag(
            pb.EvaluateFlagRequest(name=names[1], context=context), metadata=tenant.metadata
        )
        assert (staff.value.bool_value, staff.reason) == (True, "TARGETING_MATCH")
        history = await stub.ListFlagRevisions(
            pb.ListFlagRevisionsRequest(parent=names[1]), metadata=tenant.metadata
        )
        assert [r.action for r in history.flag_revisions] == [Action.ACTION_IMPORT]

        # The same call again answers as the first did and writes nothing.
        again = await import_document(stub, tenant, DOCUMENT, request_id=request_id)
        assert again == answer
        history = await stub.ListFlagRevisions(
            pb.ListFlagRevisionsRequest(parent=names[1]), metadata=tenant.metadata
        )
        assert len(history.flag_revisions) == 1
    events = await delivered(mesh, tenant, 2, resource=tenant.name, subject=subject(tenant))
    imports = [e for e in events if e.method.endswith("/ImportFlags")]
    assert [e.outcome for e in imports] == ["OK", "OK"]


async def test_a_second_import_updates_what_differs_and_deletes_what_is_missing(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        await import_document(stub, tenant, DOCUMENT)
        changed = json.loads(json.dumps(DOCUMENT))
        changed["flags"]["pageSize"]["defaultVariant"] = "large"
        del changed["flags"]["banner"]
        kept = await import_document(stub, tenant, changed)
        assert list(kept.updated_flags) == [f"{tenant.name}/flags/pageSize"]
        assert not kept.created_flags and not kept.deleted_flags
        assert sorted((await export(stub, tenant))["flags"]) == ["banner", "newCheckout", "pageSize"]
        pruned = await import_document(stub, tenant, changed, delete_missing=True)
        assert list(pruned.deleted_flags) == [f"{tenant.name}/flags/banner"] and not pruned.updated_flags
        assert sorted((await export(stub, tenant))["flags"]) == ["newCheckout", "pageSize"]
        history = await stub.ListFlagRevisions(
            pb.ListFlagRevisionsRequest(parent=f"{tenant.name}/flags/banner"), metadata=tenant.metadata
        )
        assert [r.action for r in history.flag_revisions] == [Action.ACTION_DELETE, Action.ACTION_IMPORT]


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        (b"{not json", "/: is not JSON"),
        ({"flags": {"x": {"state": "ON", "variants": {"a": 1}, "defaultVariant": "a"}}}, "/flags/x/state:"),
        (
            {
                "flags": {
                    "x": {
                        "state": "ENABLED",
                        "variants": {"a": 1},
                        "defaultVariant": "a",
                        "targeting": {"if": [{"$ref": "nope"}, "a", "a"]},
                    }
                }
            },
            "/flags/x/targeting: refers to 'nope'",
        ),
        (
            {
                "$evaluators": {"loop": {"if": [{"$ref": "loop"}, "a", "a"]}},
                "flags": {
                    "x": {
                        "state": "ENABLED",
                        "variants": {"a": 1},
                        "defaultVariant": "a",
                        "targeting": {"if": [{"$ref": "loop"}, "a", "a"]},
                    }
                },
            },
            "/flags/x/targeting: refers to 'loop'",
        ),
        (
            {"flags": {"x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}},
            "/flags/x/defaultVariant:",
        ),
        (
            {"flags": {"has space": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}},
            "/flags/has space: flag key",
        ),
        (
            {"flags": [{"key": "x", "state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}] * 2},
            "/flags/1: defines flag 'x' a second time",
        ),
    ],
    ids=["not-json", "schema", "unknown-ref", "cyclic-ref", "default-variant", "key", "duplicate-key"],
)
async def test_a_bad_document_writes_nothing(mesh: Mesh, document: Any, pointer: str) -> None:
    tenant = await new_tenant(mesh)
    good = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
    if isinstance(document, dict) and isinstance(document["flags"], dict):
        document = {**document, "flags": {"fine": good, **document["flags"]}}
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await import_document(stub, tenant, document)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "INVALID_FLAG_DEFINITION"
        assert field_violations(caught.value) == ["body"]
        assert any(description.startswith(pointer) for description in descriptions(caught.value))
        listed = await stub.ListFlags(pb.ListFlagsRequest(parent=tenant.name), metadata=tenant.metadata)
        assert not listed.flags


def descriptions(error: grpc.aio.AioRpcError) -> list[str]:
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Unpack(bad):
            return [v.description for v in bad.field_violations]
    return []


async def test_export_is_a_flagd_document_that_flagd_and_import_read(mesh: Mesh) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        await import_document(stub, tenant, DOCUMENT)
        exported = await export(stub, tenant)
        assert exported["$schema"] == schema.FLAGS_ID and schema.document_problems(exported) == []
        assert exported["flags"]["newCheckout"] == {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": STAFF_RULE,
            "metadata": {"description": "the new checkout", "flagSetId": "shop"},
        }
        core = FlagdCore()
        core.set_flags(json.loads(json.dumps(exported)))  # FlagdCore renames keys of what it is given
        staff = core.resolve_boolean_value(
            "newCheckout", False, EvaluationContext(None, {"email": "a@acme.example"})
        )
        assert (staff.value, staff.variant) == (True, "on")
        # Moving out and in again: another tenant imports the export and exports the same.
        moved = await import_document(stub, other, exported)
        assert len(moved.created_flags) == 3
        assert await export(stub, other) == exported


async def test_targeting_outside_flagds_schema_is_refused_at_write_time(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    unreached = {"if": [{"==": [{"var": "plan"}, "gold"]}, "on", {"no_such_operator": [1]}]}
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        for rule in (unreached, {"if": [{"$ref": "shared"}, "on", "off"]}):
            flag = res.Flag(
                state=res.Flag.STATE_ENABLED,
                variants={"on": struct_pb2.Value(bool_value=True), "off": struct_pb2.Value(bool_value=False)},
                default_variant="off",
            )
            flag.targeting.update(rule)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateFlag(
                    pb.CreateFlagRequest(parent=tenant.name, flag_id="gated", flag=flag),
                    metadata=tenant.metadata,
                )
            assert error_info(caught.value).reason == "INVALID_FLAG_DEFINITION"
            assert field_violations(caught.value) == ["flag.targeting"]


async def test_synced_definitions_are_a_flagd_document(mesh: Mesh) -> None:
    """What in-process providers of any language get over flagd.sync.v1 is valid by flagd's schema."""
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        await import_document(pb_grpc.FlagServiceStub(channel), tenant, DOCUMENT)
        fetched = await sync_pb2_grpc.FlagSyncServiceStub(channel).FetchAllFlags(
            sync_pb2.FetchAllFlagsRequest(), metadata=tenant.metadata
        )
    synced = json.loads(fetched.flag_configuration)
    assert schema.document_problems(synced) == []
    assert synced["flags"]["pageSize"] == {
        "state": "ENABLED",
        "variants": {"small": 10, "large": 100},
        "defaultVariant": "small",
        "metadata": {"flagSetId": "shop"},
    }
