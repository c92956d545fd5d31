"""FlagService: protos in, domain calls, protos out."""

from __future__ import annotations

import re
from typing import Any

import grpc
from google.protobuf import empty_pb2, field_mask_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.flag import errors, evaluator, store
from services.flag.models import Flag
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.errors import invalid
from services.kit.names import parse
from services.kit.pagination import page_of
from services.kit.timestamps import to_timestamp, utcnow

FLAG_ID = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
MUTABLE_FIELDS = ("state", "variants", "default_variant", "targeting", "description")
# AIP-203: output-only and identifier fields named in an update mask are ignored.
IGNORED_FIELDS = frozenset({"name", "create_time", "update_time"})
_STATES = {res.Flag.STATE_ENABLED: "ENABLED", res.Flag.STATE_DISABLED: "DISABLED"}
_STATE_NUMBERS = {state: number for number, state in _STATES.items()}


def to_value(value: Any) -> struct_pb2.Value:
    """Return a ``google.protobuf.Value`` for a JSON value (None becomes ``null_value``)."""
    return json_format.ParseDict(value, struct_pb2.Value())


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def to_json(message: Message) -> Any:
    """Return the JSON value of a ``Struct`` or ``Value``, with integral numbers as ints.

    Protobuf holds every JSON number as a double, but JsonLogic rules need integers where
    JSON has them: flagd's ``fractional`` accepts only integer weights.
    """
    return _integral(json_format.MessageToDict(message))


def flag_to_proto(flag: Flag) -> res.Flag:
    """Map a flag row to its resource."""
    message = res.Flag(
        name=f"tenants/{flag.tenant_id}/flags/{flag.key}",
        state=_STATE_NUMBERS.get(flag.state, res.Flag.STATE_UNSPECIFIED),
        variants={name: to_value(value) for name, value in flag.variants.items()},
        default_variant=flag.default_variant,
        description=flag.description,
        create_time=to_timestamp(flag.create_time),
        update_time=to_timestamp(flag.update_time),
    )
    if flag.targeting:
        message.targeting.update(flag.targeting)
    return message


def _apply(row: Flag, message: res.Flag, paths: tuple[str, ...]) -> None:
    """Copy the mutable fields named in ``paths`` from a resource onto a row."""
    for path in paths:
        if path == "state":
            row.state = _STATES.get(message.state, "")
        elif path == "variants":
            row.variants = {name: to_json(value) for name, value in message.variants.items()}
        elif path == "default_variant":
            row.default_variant = message.default_variant
        elif path == "targeting":
            row.targeting = to_json(message.targeting) or None
        elif path == "description":
            row.description = message.description


def _check(row: Flag) -> None:
    violations = evaluator.violations(row)
    if violations:
        raise errors.invalid_definition(violations)


def _update_paths(mask: field_mask_pb2.FieldMask) -> tuple[str, ...]:
    """Return the mutable fields an update mask names; empty or ``*`` means all of them (AIP-134).

    Output-only fields in the mask are ignored (AIP-203).

    Raises:
        InvalidArgument: A path is not a field of ``Flag``.
    """
    paths = list(mask.paths)
    if not paths or paths == ["*"]:
        return MUTABLE_FIELDS
    unknown = sorted(set(paths) - set(MUTABLE_FIELDS) - IGNORED_FIELDS)
    if unknown:
        raise invalid("update_mask", f"unknown fields {unknown}; mutable fields: {', '.join(MUTABLE_FIELDS)}")
    return tuple(p for p in MUTABLE_FIELDS if p in paths)


class FlagService(pb_grpc.FlagServiceServicer):
    """Per-tenant feature flags, defined and evaluated with flagd's semantics.

    Args:
        db: The flag database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def CreateFlag(self, request: pb.CreateFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        (tenant_id,) = parse(request.parent, "parent", "tenants")
        require_tenant(tenant_id)
        if not FLAG_ID.match(request.flag_id):
            raise invalid("flag_id", "must be 1-63 of a-z, 0-9, '-', '_' and '.', starting with a letter")
        now = utcnow()
        row = Flag(tenant_id=tenant_id, key=request.flag_id, create_time=now, update_time=now)
        _apply(row, request.flag, MUTABLE_FIELDS)
        _check(row)
        note_resource(f"tenants/{tenant_id}/flags/{request.flag_id}")
        async with self._db.transaction() as session:
            if not await store.add_flag(session, row):
                raise errors.flag_exists(f"tenants/{tenant_id}/flags/{request.flag_id}")
        return flag_to_proto(row)

    async def GetFlag(self, request: pb.GetFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        tenant_id, key = parse(request.name, "name", "tenants", "flags")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            row = await store.get_flag(session, tenant_id, key)
        if row is None:
            raise errors.flag_not_found(request.name)
        return flag_to_proto(row)

    async def ListFlags(
        self, request: pb.ListFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlagsResponse:
        (tenant_id,) = parse(request.parent, "parent", "tenants")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        async with self._db.transaction() as session:
            rows = await store.list_flags(session, tenant_id, page.offset, page.limit)
        page_rows, token = page.split(rows)
        return pb.ListFlagsResponse(flags=[flag_to_proto(f) for f in page_rows], next_page_token=token)

    async def UpdateFlag(self, request: pb.UpdateFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        """Update the fields of a flag named in ``update_mask`` (AIP-134); the result must stay valid."""
        tenant_id, key = parse(request.flag.name, "flag.name", "tenants", "flags")
        require_tenant(tenant_id)
        paths = _update_paths(request.update_mask)
        async with self._db.transaction() as session:
            row = await store.get_flag(session, tenant_id, key, lock=True)
            if row is None:
                raise errors.flag_not_found(request.flag.name)
            _apply(row, request.flag, paths)
            _check(row)
            row.update_time = utcnow()
        return flag_to_proto(row)

    async def DeleteFlag(
        self, request: pb.DeleteFlagRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, key = parse(request.name, "name", "tenants", "flags")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            if not await store.delete_flag(session, tenant_id, key):
                raise errors.flag_not_found(request.name)
        return empty_pb2.Empty()

    async def EvaluateFlag(
        self, request: pb.EvaluateFlagRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluateFlagResponse:
        """Evaluate a flag for the request's context plus ``tenant`` (the tenant ID)."""
        tenant_id, key = parse(request.name, "name", "tenants", "flags")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            row = await store.get_flag(session, tenant_id, key)
        if row is None:
            raise errors.flag_not_found(request.name)
        evaluation_context = to_json(request.context)
        evaluation_context["tenant"] = tenant_id
        result = evaluator.evaluate(row, evaluation_context)
        return pb.EvaluateFlagResponse(
            value=to_value(result.value),
            variant=result.variant,
            reason=result.reason,
            error_code=result.error_code,
        )
