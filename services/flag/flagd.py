"""flagd's evaluation services (``flagd.evaluation.v1`` and ``v2``) and its sync service, per tenant.

A flagd provider in RPC mode (https://flagd.dev/reference/specifications/providers/)
points at the gateway with a tenant's token and evaluates that tenant's flags,
from the replica's in-memory flag sets (:mod:`services.flag.flagsets`), with the
same ``FlagdCore`` as :class:`~services.flag.service.FlagService`. The tenant is
the verified token's; nothing in a request names one, so one tenant's token can
only ever reach its own flags.

What a provider sees is flagd's: reasons ``STATIC``, ``TARGETING_MATCH``,
``DEFAULT`` and ``DISABLED`` (a disabled flag answers OK with no value and no
variant, and the provider serves the caller's default); failures as flagd's
gRPC statuses (:data:`services.flag.errors.FLAGD_STATUS`); an event stream that
sends ``provider_ready`` at once, ``keep_alive`` after
:data:`KEEPALIVE_SECONDS` without news, and ``configuration_change`` naming the
changed flags (``data.flags.<key>.type``: ``write``, ``update``, ``delete``) as
soon as a change is installed on this replica (at once for a change made here,
within a poll interval for one made elsewhere).

Flag sets: a provider's selector (:func:`selected_set`) limits what it evaluates, resolves
all of and syncs to one of the tenant's flag sets; a flag of another set is
``FLAG_NOT_FOUND``. Event streams report every change of the tenant's flags (a
provider told of a change outside its set re-reads, and finds nothing new).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as v1
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2 as v2
from openfeature.schemas.protobuf.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from services.flag import everyone, limits
from services.flag.errors import FlagdError
from services.flag.evaluator import FlagSetEvaluator, Resolution
from services.flag.flagsets import Changes, FlagSets
from services.flag.usage import UsageCounter
from services.kit.auth import current_principal, require_tenant
from services.kit.jsonvalue import from_struct

#: Seconds without a change after which an event stream sends ``keep_alive`` (flagd's interval).
KEEPALIVE_SECONDS = 20.0
#: The request header a flagd provider names its selector in (flagd v0.11 and later).
SELECTOR_HEADER = "flagd-selector"
_SET_SELECTOR = "flagSetId="


def selected_set(context: grpc.aio.ServicerContext, field: str = "") -> str | None:
    """Returns the flag set a provider's selector names, or None when it sends none (every flag).

    The selector is the ``flagd-selector`` header, else a sync request's ``selector`` field
    (older providers): ``flagSetId=<set>`` (flagd's flag-set selector) or the set's ID alone.
    """
    selector = field
    for key, value in context.invocation_metadata() or ():
        if key == SELECTOR_HEADER and isinstance(value, str):
            selector = value
    selector = selector.strip()
    if not selector:
        return None
    return selector.removeprefix(_SET_SELECTOR).strip()


def caller_tenant() -> str:
    """Returns the tenant of the caller's token: the only tenant whose flags a caller evaluates.

    Raises:
        PermissionDenied: The caller acts for no tenant (``TENANT_MISMATCH``).
    """
    tenant = current_principal().tenant or ""
    require_tenant(tenant)
    return tenant


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


class _Evaluations:
    """What both protocol versions share: the caller's flag set, evaluation, the event stream.

    Args:
        flag_sets: This replica's in-memory flag sets.
        usage: This replica's evaluation counts.
    """

    def __init__(self, flag_sets: FlagSets, usage: UsageCounter) -> None:
        self._sets = flag_sets
        self._usage = usage

    @staticmethod
    def tenant() -> str:
        """Returns the tenant of the caller's token (:func:`caller_tenant`)."""
        return caller_tenant()

    def context_of(self, tenant: str, context: struct_pb2.Struct) -> dict[str, Any] | None:
        """Returns the evaluation context with ``tenant`` set, or None when it breaks the bounds."""
        evaluation_context = from_struct(context)
        if limits.context_problem(evaluation_context, context.ByteSize()) is not None:
            return None
        evaluation_context["tenant"] = tenant
        return evaluation_context

    def resolve(
        self, kind: str, key: str, context: struct_pb2.Struct, flag_set: str | None = None
    ) -> Resolution:
        """Evaluates the caller's flag ``key`` as a ``kind`` value (a flag outside ``flag_set`` is not found).

        Returns:
            The resolution: reason ``STATIC``, ``TARGETING_MATCH``, ``DEFAULT`` or ``DISABLED``.

        Raises:
            FlagdError: ``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``, ``PARSE_ERROR``, ``INVALID_CONTEXT``
                or ``GENERAL``, under flagd's gRPC status for it.
        """
        tenant = self.tenant()
        flags = self._sets.of(tenant)
        if not flags.selects(key, flag_set):
            raise FlagdError(ErrorCode.FLAG_NOT_FOUND.value, key)
        evaluation_context = self.context_of(tenant, context)
        result = (
            flags.refused(ErrorCode.INVALID_CONTEXT)
            if evaluation_context is None
            else flags.resolve(key, kind, evaluation_context)
        )
        self._usage.record(tenant, key, result.variant, result.reason)
        if result.reason == Reason.ERROR:
            raise FlagdError(result.error_code, key)
        return result

    def all_flags(
        self, context: struct_pb2.Struct, flag_set: str | None = None
    ) -> tuple[FlagSetEvaluator, dict[str, Resolution]]:
        """Evaluates every flag of the caller's (of ``flag_set``), each as its own type.

        Disabled and failed flags are left out.

        Raises:
            FlagdError: ``INVALID_CONTEXT`` (UNKNOWN), the context breaks the bounds.
        """
        tenant = self.tenant()
        flags = self._sets.of(tenant)
        evaluation_context = self.context_of(tenant, context)
        if evaluation_context is None:
            raise FlagdError(ErrorCode.INVALID_CONTEXT.value, "*")
        results = {
            key: flags.evaluate(key, evaluation_context)
            for key in flags.kinds
            if flags.selects(key, flag_set)
        }
        return flags, {
            key: result
            for key, result in results.items()
            if result.reason not in (Reason.ERROR, Reason.DISABLED)
        }

    async def events(self, response: Callable[..., Message]) -> AsyncIterator[Message]:
        """The event stream of the caller's tenant, as messages built by ``response(type=..., data=...)``.

        Yields:
            ``provider_ready`` first; then ``configuration_change`` for each installed change, or
            ``keep_alive`` after :data:`KEEPALIVE_SECONDS` without one. Ends when the client goes.
        """
        tenant = self.tenant()
        with self._sets.watch(tenant) as changes:
            yield response(type="provider_ready")
            while True:
                changed = await changes.next(KEEPALIVE_SECONDS)
                if not changed:
                    yield response(type="keep_alive")
                    continue
                flags = {key: {"type": kind, "flagKey": key} for key, kind in sorted(changed.items())}
                yield response(type="configuration_change", data=_struct({"flags": flags}))


def _fields(result: Resolution, value: Any) -> dict[str, Any]:
    """The response fields of a resolution: no value and no variant for a disabled flag."""
    if result.reason == Reason.DISABLED:
        return {"reason": result.reason}
    return {"value": value, "reason": result.reason, "variant": result.variant}


def _object(result: Resolution) -> struct_pb2.Struct | None:
    return None if result.value is None else _struct(result.value)


class FlagdEvaluationV2(v2_grpc.ServiceServicer):
    """``flagd.evaluation.v2.Service``: what current flagd providers call in RPC mode."""

    def __init__(self, evaluations: _Evaluations) -> None:
        self._evaluations = evaluations

    async def ResolveBoolean(
        self, request: v2.ResolveBooleanRequest, context: grpc.aio.ServicerContext
    ) -> v2.ResolveBooleanResponse:
        result = self._evaluations.resolve(
            "boolean", request.flag_key, request.context, selected_set(context)
        )
        return v2.ResolveBooleanResponse(**_fields(result, result.value))

    async def ResolveString(
        self, request: v2.ResolveStringRequest, context: grpc.aio.ServicerContext
    ) -> v2.ResolveStringResponse:
        result = self._evaluations.resolve("string", request.flag_key, request.context, selected_set(context))
        return v2.ResolveStringResponse(**_fields(result, result.value))

    async def ResolveInt(
        self, request: v2.ResolveIntRequest, context: grpc.aio.ServicerContext
    ) -> v2.ResolveIntResponse:
        result = self._evaluations.resolve(
            "integer", request.flag_key, request.context, selected_set(context)
        )
        return v2.ResolveIntResponse(**_fields(result, result.value))

    async def ResolveFloat(
        self, request: v2.ResolveFloatRequest, context: grpc.aio.ServicerContext
    ) -> v2.ResolveFloatResponse:
        result = self._evaluations.resolve("float", request.flag_key, request.context, selected_set(context))
        return v2.ResolveFloatResponse(**_fields(result, result.value))

    async def ResolveObject(
        self, request: v2.ResolveObjectRequest, context: grpc.aio.ServicerContext
    ) -> v2.ResolveObjectResponse:
        result = self._evaluations.resolve("object", request.flag_key, request.context, selected_set(context))
        return v2.ResolveObjectResponse(**_fields(result, _object(result)))

    async def EventStream(
        self, request: v2.EventStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[v2.EventStreamResponse]:
        async for event in self._evaluations.events(v2.EventStreamResponse):
            yield event  # type: ignore[misc]  # built by v2.EventStreamResponse


class FlagdEvaluationV1(v1_grpc.ServiceServicer):
    """``flagd.evaluation.v1.Service``: older flagd providers, and ``ResolveAll``."""

    def __init__(self, evaluations: _Evaluations) -> None:
        self._evaluations = evaluations

    async def ResolveAll(
        self, request: v1.ResolveAllRequest, context: grpc.aio.ServicerContext
    ) -> v1.ResolveAllResponse:
        """Evaluates every enabled flag of the caller's tenant that resolves without an error."""
        flags, results = self._evaluations.all_flags(request.context, selected_set(context))
        answer = v1.ResolveAllResponse()
        for key, result in results.items():
            flag = answer.flags[key]
            flag.reason, flag.variant = result.reason, result.variant
            kind = flags.kinds[key]
            if kind == "boolean":
                flag.bool_value = result.value
            elif kind == "string":
                flag.string_value = result.value
            elif kind == "float":
                flag.double_value = result.value
            else:
                flag.object_value.update(result.value)
        return answer

    async def ResolveBoolean(
        self, request: v1.ResolveBooleanRequest, context: grpc.aio.ServicerContext
    ) -> v1.ResolveBooleanResponse:
        result = self._evaluations.resolve(
            "boolean", request.flag_key, request.context, selected_set(context)
        )
        return v1.ResolveBooleanResponse(**_fields(result, result.value))

    async def ResolveString(
        self, request: v1.ResolveStringRequest, context: grpc.aio.ServicerContext
    ) -> v1.ResolveStringResponse:
        result = self._evaluations.resolve("string", request.flag_key, request.context, selected_set(context))
        return v1.ResolveStringResponse(**_fields(result, result.value))

    async def ResolveInt(
        self, request: v1.ResolveIntRequest, context: grpc.aio.ServicerContext
    ) -> v1.ResolveIntResponse:
        result = self._evaluations.resolve(
            "integer", request.flag_key, request.context, selected_set(context)
        )
        return v1.ResolveIntResponse(**_fields(result, result.value))

    async def ResolveFloat(
        self, request: v1.ResolveFloatRequest, context: grpc.aio.ServicerContext
    ) -> v1.ResolveFloatResponse:
        result = self._evaluations.resolve("float", request.flag_key, request.context, selected_set(context))
        return v1.ResolveFloatResponse(**_fields(result, result.value))

    async def ResolveObject(
        self, request: v1.ResolveObjectRequest, context: grpc.aio.ServicerContext
    ) -> v1.ResolveObjectResponse:
        result = self._evaluations.resolve("object", request.flag_key, request.context, selected_set(context))
        return v1.ResolveObjectResponse(**_fields(result, _object(result)))

    async def EventStream(
        self, request: v1.EventStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[v1.EventStreamResponse]:
        async for event in self._evaluations.events(v1.EventStreamResponse):
            yield event  # type: ignore[misc]  # built by v1.EventStreamResponse


class FlagdSync(sync_pb2_grpc.FlagSyncServiceServicer):
    """``flagd.sync.v1.FlagSyncService``: the caller's tenant's flag definitions, for in-process providers.

    An in-process provider (https://flagd.dev/reference/specifications/in-process-providers/)
    evaluates flags itself, with its own copy of flagd's evaluator, from the definitions this
    service sends: the tenant's flags as flagd's flag-definition JSON (``{"flags": {...}}``),
    whole, when the stream opens and again after every change installed on this replica
    that changes them. A selector (``flagd-selector`` header or the request's ``selector``,
    :func:`selected_set`) limits them to one flag set, named in the document's
    ``metadata.flagSetId``.

    A mesh service calling on its own identity, with no token and no tenant (the agent
    service: :data:`services.kit.policy.SERVICE_CALLS` grants it ``SyncFlags`` alone),
    syncs every tenant's flags in one document, keys ``<tenant>/<flag>``
    (:mod:`services.flag.everyone`, which says why).

    Args:
        flag_sets: The replica's in-memory flag sets.
    """

    def __init__(self, flag_sets: FlagSets) -> None:
        self._sets = flag_sets

    def _configuration(self, tenant: str, flag_set: str | None) -> str:
        document: dict[str, Any] = {"flags": self._sets.of(tenant).definitions_in(flag_set)}
        if flag_set:
            document["metadata"] = {"flagSetId": flag_set}
        return json.dumps(document, separators=(",", ":"))

    def _everyone(self) -> str:
        return json.dumps(everyone.document(self._sets.tenants()), separators=(",", ":"))

    async def SyncFlags(
        self, request: sync_pb2.SyncFlagsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sync_pb2.SyncFlagsResponse]:
        """Streams the definitions now, then after each change; ends when the client goes."""
        principal = current_principal()
        if principal.kind == "service" and principal.tenant is None:
            with self._sets.watch_all() as changes:
                async for response in _stream(changes, self._everyone):
                    yield response
            return
        tenant = caller_tenant()
        flag_set = selected_set(context, request.selector)
        with self._sets.watch(tenant) as changes:
            async for response in _stream(changes, lambda: self._configuration(tenant, flag_set)):
                yield response

    async def FetchAllFlags(
        self, request: sync_pb2.FetchAllFlagsRequest, context: grpc.aio.ServicerContext
    ) -> sync_pb2.FetchAllFlagsResponse:
        """Returns the definitions as they are now."""
        configuration = self._configuration(caller_tenant(), selected_set(context, request.selector))
        return sync_pb2.FetchAllFlagsResponse(flag_configuration=configuration)

    async def GetMetadata(
        self, request: sync_pb2.GetMetadataRequest, context: grpc.aio.ServicerContext
    ) -> sync_pb2.GetMetadataResponse:
        """Returns no sync metadata (flagd deprecated the call; providers ask it first)."""
        caller_tenant()
        return sync_pb2.GetMetadataResponse(metadata=struct_pb2.Struct())


async def _stream(
    changes: Changes, configuration: Callable[[], str]
) -> AsyncIterator[sync_pb2.SyncFlagsResponse]:
    """Yields ``configuration()`` now, then again after each change that alters it."""
    sent = configuration()
    yield sync_pb2.SyncFlagsResponse(flag_configuration=sent)
    while True:
        if await changes.next(KEEPALIVE_SECONDS):
            now = configuration()
            if now != sent:  # a change to another flag set is none of this one's
                sent = now
                yield sync_pb2.SyncFlagsResponse(flag_configuration=sent)


def register(server: grpc.aio.Server, flag_sets: FlagSets, usage: UsageCounter) -> None:
    """Adds flagd's evaluation services and its sync service, over ``flag_sets``, to ``server``.

    Evaluations are counted in ``usage``; syncs are not (providers then evaluate on their own).
    """
    evaluations = _Evaluations(flag_sets, usage)
    v1_grpc.add_ServiceServicer_to_server(FlagdEvaluationV1(evaluations), server)
    v2_grpc.add_ServiceServicer_to_server(FlagdEvaluationV2(evaluations), server)
    sync_pb2_grpc.add_FlagSyncServiceServicer_to_server(FlagdSync(flag_sets), server)
