"""FlagService: protos in, domain calls, protos out.

Evaluations read the replica's in-memory flag sets (:mod:`services.flag.flagsets`);
definitions are read and written in the database, and a write reloads the
tenant's set on this replica at once (others follow within a poll interval).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2, struct_pb2
from openfeature.exception import ErrorCode

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from orchestrall.flag.v1 import resources_pb2 as res
from services.flag import documents, errors, evaluator, insight, limits, revisions, store
from services.flag.definitions import (
    FLAG_ID,
    FLAG_SET_ID,
    FLAG_SET_RULE,
    fields_of_row,
    from_definition,
    to_definition,
)
from services.flag.flagsets import FlagSets
from services.flag.models import FlagRevisionRow, FlagRow, FlagState, FlagUsageRow, RevisionAction
from services.flag.usage import UsageCounter
from services.kit import jsonpatch
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database, Tx
from services.kit.enums import EnumMap
from services.kit.errors import invalid
from services.kit.fieldmask import update_paths
from services.kit.jsonvalue import from_struct, from_value, to_value
from services.kit.names import TENANT, ResourceName
from services.kit.pagination import page_of
from services.kit.timestamps import from_timestamp, to_timestamp, utcnow

FLAG = ResourceName.of(res.Flag)
FLAG_REVISION = ResourceName.of(res.FlagRevision)
FLAG_USAGE = ResourceName.of(res.FlagUsage)
STALE_REASONS = EnumMap(insight.StaleReason, pb.StaleFlag.Reason, "REASON_")
MUTABLE_FIELDS = ("state", "variants", "default_variant", "targeting", "description", "flag_set")
# AIP-203: output-only and identifier fields named in an update mask are ignored.
IGNORED_FIELDS = frozenset({"name", "create_time", "update_time", "revision_id"})
FLAG_STATES = EnumMap(FlagState, res.Flag.State, "STATE_")
REVISION_ACTIONS = EnumMap(RevisionAction, res.FlagRevision.Action, "ACTION_")


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
        revision_id=flag.revision_id,
        flag_set=flag.flag_set,
    )
    if flag.targeting:
        message.targeting.update(flag.targeting)
    return message


def revision_to_proto(revision: FlagRevisionRow) -> res.FlagRevision:
    """Maps a revision row to its resource; its ``flag`` has no ``create_time`` (revisions do not keep it)."""
    message = res.FlagRevision(
        name=FLAG_REVISION.format(revision.tenant_id, revision.flag_key, revision.id),
        action=REVISION_ACTIONS.to_proto(RevisionAction(revision.action)),
        principal=revision.principal,
        create_time=to_timestamp(revision.create_time),
    )
    if revision.definition is not None:
        fields = from_definition(revision.definition)
        message.flag.CopyFrom(
            flag_to_proto(
                FlagRow(
                    tenant_id=revision.tenant_id,
                    key=revision.flag_key,
                    **fields,
                    create_time=revision.create_time,
                    update_time=revision.create_time,
                    revision_id=revision.id,
                )
            )
        )
        message.flag.ClearField("create_time")
    for operation in revision.diff:
        item = message.diff.add(op=operation["op"], path=operation["path"])
        if "value" in operation:
            item.value.CopyFrom(to_value(operation["value"]))
    if revision.rollback_revision_id:
        message.rollback_revision = FLAG_REVISION.format(
            revision.tenant_id, revision.flag_key, revision.rollback_revision_id
        )
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
    """Returns the mutable fields named in ``paths`` of a resource, as column values.

    Raises:
        InvalidArgument: ``flag.flag_set`` is not a flag set ID.
    """
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
        elif path == "flag_set":
            if message.flag_set and not FLAG_SET_ID.match(message.flag_set):
                raise invalid("flag.flag_set", f"{FLAG_SET_RULE} (or be empty)")
            values["flag_set"] = message.flag_set
    return values


def _check(row: FlagRow) -> None:
    violations = evaluator.violations(row)
    if violations:
        raise errors.invalid_definition(violations)


def _create(tx: Tx, row: FlagRow, request_id: str | None) -> FlagRow | None:
    """Inserts a new flag and a revision of it; None when the key is taken (nothing is written).

    A call whose ``request_id`` created the flag before gets the flag as it is now.
    """
    if request_id and store.flag_revision_of_request(tx, row.key, request_id) is not None:
        return store.get_flag(tx, row.key)
    row = dataclasses.replace(row, revision_id=revisions.new_revision_id(tx, row.key))
    if not store.add_flag(tx, row):
        return None
    revisions.append(
        tx,
        row.key,
        row.revision_id,
        RevisionAction.CREATE,
        fields_of_row(row),
        row.create_time,
        request_id=request_id,
    )
    return row


def _unchanged(before: FlagRow, after: FlagRow) -> bool:
    """Whether two versions of a flag have the same definition (JSON types compared exactly)."""
    return not jsonpatch.diff(to_definition(fields_of_row(before)), to_definition(fields_of_row(after)))


def _update(tx: Tx, key: str, message: res.Flag, paths: tuple[str, ...]) -> FlagRow | None:
    """Reads the flag locked, applies the named fields, checks the result and writes it, in one transaction.

    An update that changes no field writes nothing and makes no revision.

    Returns:
        The flag as it is afterwards, or None when there is none.

    Raises:
        InvalidArgument: The result is no valid flagd flag (nothing is written).
    """
    row = store.get_flag(tx, key, lock=True)
    if row is None:
        return None
    fields = _fields(message, paths)
    if _unchanged(row, dataclasses.replace(row, **fields)):
        return row
    now = utcnow()
    changes = {**fields, "update_time": now, "revision_id": revisions.new_revision_id(tx, key)}
    updated = dataclasses.replace(row, **changes)
    _check(updated)
    written = store.update_flag(tx, key, changes)
    revisions.append(tx, key, updated.revision_id, RevisionAction.UPDATE, fields_of_row(updated), now)
    return written


def _delete(tx: Tx, key: str) -> bool:
    """Deletes the flag and records the deletion as a revision; False when there is none."""
    if store.get_flag(tx, key, lock=True) is None or not store.delete_flag(tx, key):
        return False
    revision_id = revisions.new_revision_id(tx, key)
    revisions.append(tx, key, revision_id, RevisionAction.DELETE, None, utcnow())
    return True


def _rollback(tx: Tx, key: str, revision_id: str, request_id: str | None) -> FlagRow | None:
    """Gives the flag the definition of one of its revisions, as a new revision, in one transaction.

    Returns:
        The flag afterwards; None when an earlier call with ``request_id`` rolled it back and
        it has been deleted since.

    Raises:
        NotFound: The key has no revision ``revision_id`` (``FLAG_REVISION_NOT_FOUND``).
        InvalidArgument: The revision is a deletion, or its definition breaks today's rules.
    """
    current = store.get_flag(tx, key, lock=True)
    if request_id and store.flag_revision_of_request(tx, key, request_id) is not None:
        return current
    target = store.get_flag_revision(tx, key, revision_id)
    if target is None:
        raise errors.revision_not_found(FLAG_REVISION.format(tx.tenant_id, key, revision_id))
    if target.definition is None:
        raise invalid("revision_id", "names a deletion, which has no definition to restore")
    fields = from_definition(target.definition)
    if current is not None and _unchanged(current, dataclasses.replace(current, **fields)):
        return current
    now = utcnow()
    new_id = revisions.new_revision_id(tx, key)
    if current is None:
        restored = FlagRow(tx.tenant_id, key, **fields, create_time=now, update_time=now, revision_id=new_id)
        _check(restored)
        if not store.add_flag(tx, restored):
            raise RuntimeError(f"flag {key} appeared while locked")
    else:
        changes: dict[str, Any] = {**fields, "update_time": now, "revision_id": new_id}
        restored = dataclasses.replace(current, **changes)
        _check(restored)
        store.update_flag(tx, key, changes)
    revisions.append(
        tx,
        key,
        new_id,
        RevisionAction.ROLLBACK,
        fields,
        now,
        rollback_revision_id=revision_id,
        request_id=request_id,
    )
    return restored


@dataclasses.dataclass
class ImportOutcome:
    """What an import changed: flag keys created, updated and deleted, each in key order."""

    created: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)
    deleted: list[str] = dataclasses.field(default_factory=list)


def _earlier_import(tx: Tx, request_id: str) -> ImportOutcome | None:
    """Returns what the import with ``request_id`` changed, from its revisions; None when it made none."""
    made = store.flag_revisions_of_call(tx, request_id)
    if not made:
        return None
    outcome = ImportOutcome()
    for revision in sorted(made, key=lambda r: r.flag_key):
        if revision.action == RevisionAction.DELETE:
            outcome.deleted.append(revision.flag_key)
            continue
        before = store.flag_revision_numbered(tx, revision.flag_key, revision.sequence - 1)
        new = before is None or before.action == RevisionAction.DELETE
        (outcome.created if new else outcome.updated).append(revision.flag_key)
    return outcome


def _import(
    tx: Tx, document: documents.Document, delete_missing: bool, request_id: str | None
) -> ImportOutcome:
    """Creates, replaces and (``delete_missing``) deletes flags to match a document, in one transaction.

    ``delete_missing`` deletes the flags of the document's flag set that it does not define.

    Each change makes a revision (``IMPORT``, or ``DELETE``) carrying ``request_id``; a flag the
    document defines as it is makes none. A call whose ``request_id`` made revisions before
    changes nothing and returns what that call changed.
    """
    if request_id:
        earlier = _earlier_import(tx, request_id)
        if earlier is not None:
            return earlier
    outcome = ImportOutcome()
    now = utcnow()
    flags = document.flags
    for key in sorted(flags):
        fields = flags[key]
        current = store.get_flag(tx, key, lock=True)
        revision_id = revisions.new_revision_id(tx, key)
        if current is None:
            row = FlagRow(
                tx.tenant_id, key, **fields, create_time=now, update_time=now, revision_id=revision_id
            )
            if not store.add_flag(tx, row):
                raise RuntimeError(f"flag {key} appeared while importing")
            outcome.created.append(key)
        elif _unchanged(current, dataclasses.replace(current, **fields)):
            continue
        else:
            store.update_flag(tx, key, {**fields, "update_time": now, "revision_id": revision_id})
            outcome.updated.append(key)
        revisions.append(tx, key, revision_id, RevisionAction.IMPORT, fields, now, request_id=request_id)
    if delete_missing:
        for row in store.tenant_flags(tx):
            if row.flag_set != document.flag_set or row.key in flags:
                continue
            if store.get_flag(tx, row.key, lock=True) is not None:
                store.delete_flag(tx, row.key)
                revision_id = revisions.new_revision_id(tx, row.key)
                revisions.append(
                    tx, row.key, revision_id, RevisionAction.DELETE, None, now, request_id=request_id
                )
                outcome.deleted.append(row.key)
    return outcome


def _usage_of(
    tx: Tx, key: str, start: dt.datetime, end: dt.datetime
) -> tuple[FlagRow, list[FlagUsageRow], dt.datetime | None] | None:
    """The flag, its stored counts in the window and its last stored evaluation; None without a flag."""
    flag = store.get_flag(tx, key)
    if flag is None:
        return None
    return flag, store.usage_of(tx, key, start, end), store.last_evaluations(tx, [key]).get(key)


def _usage_since(
    tx: Tx, since: dt.datetime
) -> tuple[list[FlagRow], list[FlagUsageRow], dict[str, dt.datetime]]:
    """The tenant's flags, their stored counts from ``since`` on and their last stored evaluations."""
    return store.tenant_flags(tx), store.usage_since(tx, since), store.last_evaluations(tx)


class FlagService(pb_grpc.FlagServiceServicer):
    """Per-tenant feature flags, defined and evaluated with flagd's semantics.

    Args:
        db: The flag database.
        flag_sets: This replica's in-memory flag sets.
        usage: This replica's evaluation counts.
    """

    def __init__(self, db: Database, flag_sets: FlagSets, usage: UsageCounter) -> None:
        self._db = db
        self._sets = flag_sets
        self._usage = usage

    async def CreateFlag(self, request: pb.CreateFlagRequest, context: grpc.aio.ServicerContext) -> res.Flag:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if not FLAG_ID.match(request.flag_id):
            raise invalid(
                "flag_id", "must be 1-63 of A-Z, a-z, 0-9, '-', '_' and '.', starting with a letter"
            )
        now = utcnow()
        fields = _fields(request.flag, MUTABLE_FIELDS)
        row = FlagRow(
            tenant_id=tenant_id,
            key=request.flag_id,
            create_time=now,
            update_time=now,
            **fields,
        )
        _check(row)
        name = FLAG.format(tenant_id, request.flag_id)
        note_resource(name)
        created = await self._db.write(tenant_id, _create, row, request.request_id or None)
        if created is None:
            raise errors.flag_exists(name)
        await self._sets.reload(tenant_id)
        return flag_to_proto(created)

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
        paths = update_paths(request.update_mask, MUTABLE_FIELDS, IGNORED_FIELDS)
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
        if not await self._db.write(tenant_id, _delete, key):
            raise errors.flag_not_found(request.name)
        self._usage.forget(tenant_id, key)
        await self._sets.reload(tenant_id)
        return empty_pb2.Empty()

    async def ListFlagRevisions(
        self, request: pb.ListFlagRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFlagRevisionsResponse:
        tenant_id, key = FLAG.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_flag_revisions, key, page)
        if listing is None:
            raise errors.flag_not_found(request.parent)
        items, token = listing.messages(revision_to_proto)
        return pb.ListFlagRevisionsResponse(flag_revisions=items, next_page_token=token)

    async def GetFlagRevision(
        self, request: pb.GetFlagRevisionRequest, context: grpc.aio.ServicerContext
    ) -> res.FlagRevision:
        tenant_id, key, revision_id = FLAG_REVISION.parse(request.name, "name")
        require_tenant(tenant_id)
        revision = await self._db.read(tenant_id, store.get_flag_revision, key, revision_id)
        if revision is None:
            raise errors.revision_not_found(request.name)
        return revision_to_proto(revision)

    async def RollbackFlag(
        self, request: pb.RollbackFlagRequest, context: grpc.aio.ServicerContext
    ) -> res.Flag:
        """Restore a revision's definition as the flag's new revision (AIP-162)."""
        tenant_id, key = FLAG.parse(request.name, "name")
        require_tenant(tenant_id)
        row = await self._db.write(tenant_id, _rollback, key, request.revision_id, request.request_id or None)
        if row is None:
            raise errors.flag_not_found(request.name)
        await self._sets.reload(tenant_id)
        return flag_to_proto(row)

    async def ImportFlags(
        self, request: pb.ImportFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ImportFlagsResponse:
        """Import a flagd flag-definition document, all or nothing (:mod:`services.flag.documents`)."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        document = documents.read(tenant_id, request.body.data)
        outcome = await self._db.write(
            tenant_id, _import, document, request.delete_missing, request.request_id or None
        )
        for key in outcome.deleted:
            self._usage.forget(tenant_id, key)
        await self._sets.reload(tenant_id)
        return pb.ImportFlagsResponse(
            created_flags=[FLAG.format(tenant_id, key) for key in outcome.created],
            updated_flags=[FLAG.format(tenant_id, key) for key in outcome.updated],
            deleted_flags=[FLAG.format(tenant_id, key) for key in outcome.deleted],
        )

    async def ExportFlags(
        self, request: pb.ExportFlagsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Return the tenant's flags as a flagd flag-definition document."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        flags = await self._db.read(tenant_id, store.tenant_flags)
        data = documents.write(flags, request.flag_set or None)
        return httpbody_pb2.HttpBody(content_type="application/json", data=data)

    async def GetFlagUsage(
        self, request: pb.GetFlagUsageRequest, context: grpc.aio.ServicerContext
    ) -> res.FlagUsage:
        """Return a flag's evaluation counts by hour, variant and reason, stored and this replica's."""
        tenant_id, key = FLAG_USAGE.parse(request.name, "name")
        require_tenant(tenant_id)
        end = insight.ceil_hour(
            from_timestamp(request.end_time) if request.HasField("end_time") else utcnow()
        )
        start = insight.floor_hour(
            from_timestamp(request.start_time)
            if request.HasField("start_time")
            else end - insight.DEFAULT_WINDOW
        )
        if start >= end:
            raise invalid("start_time", "must be before end_time")
        if end - start > insight.MAX_WINDOW:
            raise invalid("end_time", f"the window may be at most {insight.MAX_WINDOW.days} days")
        found = await self._db.read(tenant_id, _usage_of, key, start, end)
        if found is None:
            raise errors.flag_not_found(FLAG.format(tenant_id, key))
        flag, rows, last = found
        pending = self._usage.pending(tenant_id, key)
        counted = insight.usage([*rows, *pending], start, end, last, flag.create_time)
        message = res.FlagUsage(
            name=request.name,
            last_evaluate_time=to_timestamp(counted.last_evaluate_time),
            start_time=to_timestamp(start),
            end_time=to_timestamp(end),
        )
        for target, items in ((message.counts, counted.counts), (message.totals, counted.totals)):
            for item in items:
                target.add(
                    start_time=to_timestamp(item.start),
                    variant=item.variant,
                    reason=item.reason,
                    count=item.count,
                )
        return message

    async def ReportStaleFlags(
        self, request: pb.ReportStaleFlagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportStaleFlagsResponse:
        """Report flags not evaluated, or serving one variant, in the last ``days`` days."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        since = insight.floor_hour(utcnow() - dt.timedelta(days=request.days or insight.DEFAULT_STALE_DAYS))
        flags, rows, last = await self._db.read(tenant_id, _usage_since, since)
        stale = insight.stale_flags(flags, [*rows, *self._usage.pending(tenant_id)], last, since)
        return pb.ReportStaleFlagsResponse(
            stale_flags=[
                pb.StaleFlag(
                    flag=FLAG.format(tenant_id, item.key),
                    reason=STALE_REASONS.to_proto(item.reason),
                    last_evaluate_time=to_timestamp(item.last_evaluate_time),
                    variant=item.variant,
                    evaluation_count=item.evaluation_count,
                )
                for item in stale
            ]
        )

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
        if answer is None:
            answer = self._evaluate(tenant_id, key, flags, request.context)
        self._usage.record(tenant_id, key, answer.variant, answer.reason)
        return answer

    @staticmethod
    def _evaluate(
        tenant_id: str, key: str, flags: evaluator.FlagSetEvaluator, context: struct_pb2.Struct
    ) -> pb.EvaluateFlagResponse:
        static = flags.static(key)
        if static is not None:  # a static flag's answer, encoded once per flag set
            answer: pb.EvaluateFlagResponse = _evaluation_to_proto(static)
            flags.memo[key] = answer
            return answer
        evaluation_context = from_struct(context)
        if limits.context_problem(evaluation_context, context.ByteSize()) is not None:
            return _evaluation_to_proto(flags.refused(ErrorCode.INVALID_CONTEXT))
        evaluation_context["tenant"] = tenant_id
        return _evaluation_to_proto(flags.evaluate(key, evaluation_context))
