"""Flag revisions (AIP-162): each change makes one, with who, when, what and a diff; rollback restores one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from sqlalchemy import create_engine, text

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.kit import migrate
from services.kit.db import connect_args, database_url, schema_name
from services.kit.timestamps import utcnow
from tests.conftest import SCHEMA_PREFIX, Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant
from tests.service.test_principals import delivered

Action = res.FlagRevision.Action


def tier(default: str = "basic", description: str = "") -> res.Flag:
    return res.Flag(
        state=res.Flag.STATE_ENABLED,
        variants={
            "basic": struct_pb2.Value(string_value="gpt-small"),
            "premium": struct_pb2.Value(string_value="gpt-large"),
        },
        default_variant=default,
        description=description,
    )


def patch(revision: res.FlagRevision) -> list[dict]:
    return [json_format.MessageToDict(operation) for operation in revision.diff]


def subject(tenant: Tenant) -> str:
    return f"{tenant.name}/apiKeys/{tenant.secret[4:36]}"


async def revisions_of(stub: pb_grpc.FlagServiceStub, tenant: Tenant, name: str) -> list[res.FlagRevision]:
    listed = await stub.ListFlagRevisions(pb.ListFlagRevisionsRequest(parent=name), metadata=tenant.metadata)
    return list(listed.flag_revisions)


async def update(stub: pb_grpc.FlagServiceStub, tenant: Tenant, flag: res.Flag, *paths: str) -> res.Flag:
    request = pb.UpdateFlagRequest(flag=flag, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))
    answer: res.Flag = await stub.UpdateFlag(request, metadata=tenant.metadata)
    return answer


async def test_each_change_makes_a_revision_with_its_principal_time_definition_and_diff(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        created = await stub.CreateFlag(
            pb.CreateFlagRequest(parent=tenant.name, flag_id="tier", flag=tier(description="model size")),
            metadata=tenant.metadata,
        )
        assert len(created.revision_id) == 8
        updated = await update(
            stub, tenant, res.Flag(name=created.name, default_variant="premium"), "default_variant"
        )
        unchanged = await update(
            stub, tenant, res.Flag(name=created.name, default_variant="premium"), "default_variant"
        )
        assert updated.revision_id != created.revision_id
        assert unchanged.revision_id == updated.revision_id and unchanged.update_time == updated.update_time
        await stub.DeleteFlag(pb.DeleteFlagRequest(name=created.name), metadata=tenant.metadata)

        history = await revisions_of(stub, tenant, created.name)
        assert [r.action for r in history] == [
            Action.ACTION_DELETE,
            Action.ACTION_UPDATE,
            Action.ACTION_CREATE,
        ]
        deletion, change, creation = history
        assert {r.principal for r in history} == {subject(tenant)}
        assert creation.create_time.ToDatetime() <= change.create_time.ToDatetime()
        assert change.create_time.ToDatetime() <= deletion.create_time.ToDatetime()
        assert creation.name == f"{created.name}/revisions/{created.revision_id}"
        assert creation.flag.variants == created.variants and creation.flag.description == "model size"
        assert change.flag.default_variant == "premium" and change.flag.revision_id == updated.revision_id
        assert patch(creation) == [
            {"op": "add", "path": "/defaultVariant", "value": "basic"},
            {"op": "add", "path": "/metadata", "value": {"description": "model size"}},
            {"op": "add", "path": "/state", "value": "ENABLED"},
            {"op": "add", "path": "/variants", "value": {"basic": "gpt-small", "premium": "gpt-large"}},
        ]
        assert patch(change) == [{"op": "replace", "path": "/defaultVariant", "value": "premium"}]
        assert not deletion.HasField("flag")
        assert patch(deletion) == [
            {"op": "remove", "path": f"/{field}"}
            for field in ("defaultVariant", "metadata", "state", "variants")
        ]
        # Revisions outlive their flag, one at a time too.
        got = await stub.GetFlagRevision(
            pb.GetFlagRevisionRequest(name=change.name), metadata=tenant.metadata
        )
        assert got == change
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetFlagRevision(
                pb.GetFlagRevisionRequest(name=f"{created.name}/revisions/00000000"), metadata=tenant.metadata
            )
        assert error_info(caught.value).reason == "FLAG_REVISION_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await revisions_of(stub, tenant, f"{tenant.name}/flags/never")
        assert error_info(caught.value).reason == "FLAG_NOT_FOUND"
    # Each change is an audit event too, committed with it.
    events = await delivered(mesh, tenant, 4, resource=created.name)
    assert sorted(e.method.rsplit("/", 1)[1] for e in events) == [
        "CreateFlag",
        "DeleteFlag",
        "UpdateFlag",
        "UpdateFlag",
    ]
    assert {(e.outcome, e.subject) for e in events} == {("OK", subject(tenant))}


async def test_a_refused_change_makes_no_revision(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        created = await stub.CreateFlag(
            pb.CreateFlagRequest(parent=tenant.name, flag_id="tier", flag=tier()), metadata=tenant.metadata
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await update(stub, tenant, res.Flag(name=created.name, default_variant="gold"), "default_variant")
        assert "flag.default_variant" in field_violations(caught.value)
        assert [r.action for r in await revisions_of(stub, tenant, created.name)] == [Action.ACTION_CREATE]
        got = await stub.GetFlag(pb.GetFlagRequest(name=created.name), metadata=tenant.metadata)
        assert got.revision_id == created.revision_id


async def test_rollback_restores_a_revision_as_a_new_one(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        first = await stub.CreateFlag(
            pb.CreateFlagRequest(parent=tenant.name, flag_id="tier", flag=tier()), metadata=tenant.metadata
        )
        await update(stub, tenant, res.Flag(name=first.name, state=res.Flag.STATE_DISABLED), "state")
        request = pb.RollbackFlagRequest(
            name=first.name, revision_id=first.revision_id, request_id=str(uuid.uuid4())
        )
        restored = await stub.RollbackFlag(request, metadata=tenant.metadata)
        assert restored.state == res.Flag.STATE_ENABLED and restored.revision_id != first.revision_id
        evaluated = await stub.EvaluateFlag(pb.EvaluateFlagRequest(name=first.name), metadata=tenant.metadata)
        assert (evaluated.variant, evaluated.reason) == ("basic", "STATIC")
        history = await revisions_of(stub, tenant, first.name)
        assert [r.action for r in history] == [
            Action.ACTION_ROLLBACK,
            Action.ACTION_UPDATE,
            Action.ACTION_CREATE,
        ]
        assert history[0].rollback_revision == f"{first.name}/revisions/{first.revision_id}"
        assert patch(history[0]) == [{"op": "replace", "path": "/state", "value": "ENABLED"}]
        # A retry of the same call, and a rollback to what the flag already is, change nothing.
        assert await stub.RollbackFlag(request, metadata=tenant.metadata) == restored
        again = pb.RollbackFlagRequest(name=first.name, revision_id=first.revision_id)
        assert await stub.RollbackFlag(again, metadata=tenant.metadata) == restored
        assert len(await revisions_of(stub, tenant, first.name)) == 3

        # A deleted flag comes back from one of its revisions; a deletion has nothing to restore.
        await stub.DeleteFlag(pb.DeleteFlagRequest(name=first.name), metadata=tenant.metadata)
        deletion = (await revisions_of(stub, tenant, first.name))[0]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RollbackFlag(
                pb.RollbackFlagRequest(name=first.name, revision_id=deletion.name.rsplit("/", 1)[1]),
                metadata=tenant.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == ["revision_id"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RollbackFlag(
                pb.RollbackFlagRequest(name=first.name, revision_id="ffffffff"), metadata=tenant.metadata
            )
        assert error_info(caught.value).reason == "FLAG_REVISION_NOT_FOUND"
        revived = await stub.RollbackFlag(again, metadata=tenant.metadata)
        assert revived.state == res.Flag.STATE_ENABLED and revived.variants == first.variants
        assert await stub.GetFlag(pb.GetFlagRequest(name=first.name), metadata=tenant.metadata) == revived
        history = await revisions_of(stub, tenant, first.name)
        assert [r.action for r in history[:2]] == [Action.ACTION_ROLLBACK, Action.ACTION_DELETE]
        assert {op["op"] for op in patch(history[0])} == {"add"}
    events = await delivered(mesh, tenant, 9, resource=first.name)
    rollbacks = sorted(e.outcome for e in events if e.method.endswith("/RollbackFlag"))
    assert rollbacks == ["INVALID_ARGUMENT", "NOT_FOUND", "OK", "OK", "OK", "OK"]


async def test_revisions_page_newest_first(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        flag = await stub.CreateFlag(
            pb.CreateFlagRequest(parent=tenant.name, flag_id="tier", flag=tier()), metadata=tenant.metadata
        )
        made = [flag.revision_id]
        for number in range(4):
            changed = await update(
                stub, tenant, res.Flag(name=flag.name, description=f"v{number}"), "description"
            )
            made.append(changed.revision_id)
        seen: list[str] = []
        token = ""
        while True:
            page = await stub.ListFlagRevisions(
                pb.ListFlagRevisionsRequest(parent=flag.name, page_size=2, page_token=token),
                metadata=tenant.metadata,
            )
            assert len(page.flag_revisions) <= 2
            seen += [r.name.rsplit("/", 1)[1] for r in page.flag_revisions]
            token = page.next_page_token
            if not token:
                break
        assert seen == made[::-1]


def test_the_migration_gives_existing_flags_a_first_revision(mesh: Mesh, tmp_path: Path) -> None:
    settings = mesh.config.settings("flag").model_copy(
        update={"schema_prefix": f"{SCHEMA_PREFIX}flagrev_", "state_dir": tmp_path}
    )
    admin = database_url(settings, "flag", admin=True)
    engine = create_engine(admin, connect_args=connect_args(settings, "flag"))
    try:
        migrate.upgrade(settings, "flag", "0004")
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO flags (tenant_id, key, state, variants, default_variant, targeting,"
                    " description, create_time, update_time) VALUES ('t', 'old', 'ENABLED',"
                    " :variants, 'on', NULL, 'from before', :now, :now)"
                ),
                {"variants": json.dumps({"on": True, "off": False}), "now": now},
            )
        migrate.upgrade(settings, "flag")
        with engine.connect() as connection:
            (revision_id,) = connection.execute(text("SELECT revision_id FROM flags")).one()
            rows = connection.execute(
                text("SELECT flag_key, id, sequence, action, definition, principal FROM flag_revisions")
            ).all()
    finally:
        engine.dispose()
        if admin.get_backend_name() == "postgresql":
            dropper = create_engine(admin)
            with dropper.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name(settings, "flag")}" CASCADE'))
            dropper.dispose()
    assert len(rows) == 1
    key, id_, sequence, action, definition, principal = rows[0]
    assert (key, id_, sequence, action, principal) == ("old", revision_id, 1, "CREATE", "")
    definition = json.loads(definition) if isinstance(definition, str) else definition
    assert definition == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
        "metadata": {"description": "from before"},
    }


async def test_a_create_retried_with_its_request_id_returns_the_flag(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel:
        stub = pb_grpc.FlagServiceStub(channel)
        request = pb.CreateFlagRequest(
            parent=tenant.name, flag_id="tier", flag=tier(), request_id=str(uuid.uuid4())
        )
        first = await stub.CreateFlag(request, metadata=tenant.metadata)
        assert await stub.CreateFlag(request, metadata=tenant.metadata) == first
        request.request_id = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateFlag(request, metadata=tenant.metadata)
        assert error_info(caught.value).reason == "FLAG_ALREADY_EXISTS"
        assert len(await revisions_of(stub, tenant, first.name)) == 1
