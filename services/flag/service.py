"""FlagService: protos in, domain calls, protos out.

Evaluations read the replica's in-memory flag sets (:mod:`services.flag.flagsets`);
definitions are read and written in the database, and a write reloads the
tenant's set on this replica at once (others follow within a poll interval).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from openfeature.exception import ErrorCode

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.flag import errors, evaluator, limits, store
from services.flag.flagsets import FlagSets
from services.flag.models import FlagRow, FlagState
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database, Tx
from services.kit.enums import EnumMap
from services.kit.errors import invalid
from services.kit.jsonvalue import from_struct, from_value, to_value
from services.kit.names import TENANT, ResourceName
from services.kit.pagination import page_of
from services.kit.timestamps import to_timestamp, utcnow

FLAG = ResourceName.of(res.Flag)
FLAG_ID = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
MUTABLE_FIELDS = ("state", "variants", "default_variant", "targeting", "description")
# AIP-203: output-only and identifier fields named in an update mask are ignored.
IGNORED_FIELDS = frozenset({"name", "create_time", "update_time"})
FLAG_STATES = EnumMap(FlagState, res.Flag.State, "STATE_")


def flag_to_proto(flag: FlagRow) -> res.Flag:
    """Maps a flag row to its resource."""
    message = res.Flag(
        name=FLAG.format(flag.tenant_id, flag.key),
        state=FLAG_STATES.to_proto(flag.state),
        variants={name: to_value(value) for name, value in flag.variants.items()},
        default_variant=flag.default_variant,
        description=flag.description,
        create_time=to_timestamp(flag.create_time),
        update_time=to_timestamp(flag.update_time),
    )
    if flag.targeting:
        message.targeting.update(flag.targeting)
    return message


def _evaluation_to_proto(result: evaluator.Resolution) -> pb.EvaluateFlagResponse:
    """Maps a resolution to the RPC's answer."""
    return pb.EvaluateFlagResponse(
        value=to_value(result.value),
        variant=result.variant,
        reason=result.reason,
        error_code=result.error_code,
    )


def _fields(message: res.Flag, paths: tuple[str, ...]) -> dict[str, Any]:
    """Returns the mutable fields named in ``paths`` of a resource, as column values."""
    values: dict[str, Any] = {}
    for path in paths:
        if path == "state":
            state = FLAG_STATES.from_proto(message.state)
            values["state"] = state.value if state is not None else ""
        elif path == "variants":
            values["variants"] = {name: from_value(value) for name, value in message.variants.items()}
        elif path == "default_variant":
            values["default_variant"] = message.default_variant
        elif path == "targeting":
            values["targeting"] = from_struct(message.targeting) or None
        elif path == "description":
            values["description"] = message.description
    return values


def _check(row: FlagRow) -> None:
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


def _update(tx: Tx, key: str, message: res.Flag, paths: tuple[str, ...]) -> FlagRow | None:
    """Reads the flag locked, applies the named fields, checks the result and writes it, in one transaction.

    Raises:
        InvalidArgument: The result is no valid flagd flag (nothing is written).
    """
    row = store.get_flag(tx, key, lock=True)
    if row is None:
        return None
    changes = {**_fields(message, paths), "update_time": utcnow()}
    _check(dataclasses.replace(row, **changes))
    return store.update_flag(tx, key, changes)


class FlagService(pb_grpc.FlagServiceServicer):
    """Per-tenant feature flags, defined and evaluated with flagd's semantics.

    Args:
        db: The flag database.
        flag_sets: This replica's in-memory flag sets.
    """

    def __init__(self, db: Database, flag_sets: FlagSets) -> None:
        self._db = db
        self._sets = flag_sets

    async def CreateFlag(self, request: pb.CreateFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if not FLAG_ID.match(request.flag_id):
            raise invalid("flag_id", "must be 1-63 of a-z, 0-9, '-', '_' and '.', starting with a letter")
        now = utcnow()
        fields = _fields(request.flag, MUTABLE_FIELDS)
        row = FlagRow(tenant_id=tenant_id, key=request.flag_id, create_time=now, update_time=now, **fields)
        _check(row)
        name = FLAG.format(tenant_id, request.flag_id)
        note_resource(name)
        if not await self._db.write(tenant_id, store.add_flag, row):
            raise errors.flag_exists(name)
        await self._sets.reload(tenant_id)
        return flag_to_proto(row)

    async def GetFlag(self, request: pb.GetFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        tenant_id, key = FLAG.parse(request.name, "name")
        require_tenant(tenant_id)
        row = await self._db.read(tenant_id, store.get_flag, key)
        if row is None:
            raise errors.flag_not_found(request.name)
        return flag_to_proto(row)

    async def ListFlags(
        self, request: pb.ListFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlagsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_flags, page)
        flags, token = listing.messages(flag_to_proto)
        return pb.ListFlagsResponse(flags=flags, next_page_token=token)

    async def UpdateFlag(self, request: pb.UpdateFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        """Update the fields of a flag named in ``update_mask`` (AIP-134); the result must stay valid."""
        tenant_id, key = FLAG.parse(request.flag.name, "flag.name")
        require_tenant(tenant_id)
        paths = _update_paths(request.update_mask)
        row = await self._db.write(tenant_id, _update, key, request.flag, paths)
        if row is None:
            raise errors.flag_not_found(request.flag.name)
        await self._sets.reload(tenant_id)
        return flag_to_proto(row)

    async def DeleteFlag(
        self, request: pb.DeleteFlagRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, key = FLAG.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, store.delete_flag, key):
            raise errors.flag_not_found(request.name)
        await self._sets.reload(tenant_id)
        return empty_pb2.Empty()

    async def EvaluateFlag(
        self, request: pb.EvaluateFlagRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluateFlagResponse:
        """Evaluate a flag for the request's context plus ``tenant`` (the tenant ID), from memory."""
        tenant_id, key = FLAG.parse(request.name, "name")
        require_tenant(tenant_id)
        flags = self._sets.of(tenant_id)
        if key not in flags:
            raise errors.flag_not_found(request.name)
        answer: pb.EvaluateFlagResponse | None = flags.memo.get(key)
        if answer is not None:  # a static flag's answer, encoded once per flag set
            return answer
        static = flags.static(key)
        if static is not None:
            answer = flags.memo[key] = _evaluation_to_proto(static)
            return answer
        evaluation_context = from_struct(request.context)
        if limits.context_problem(evaluation_context, request.context.ByteSize()) is not None:
            return _evaluation_to_proto(flags.refused(ErrorCode.INVALID_CONTEXT))
        evaluation_context["tenant"] = tenant_id
        return _evaluation_to_proto(flags.evaluate(key, evaluation_context))
