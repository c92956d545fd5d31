"""The OpenFeature Remote Evaluation Protocol (OFREP), per tenant: ``orchestrall.flag.v1.OfrepService``.

OFREP (open-feature/protocol, ``service/openapi.yaml`` 0.3.0) is JSON over HTTP:
``POST /ofrep/v1/evaluate/flags/{key}`` evaluates one flag, ``POST
/ofrep/v1/evaluate/flags`` every flag, each for the ``context`` of the request's
body. The gateway transcodes both to this service's RPCs with the bodies as
``google.api.HttpBody``, so the calls pass the kit's guard like every other
(token, permission ``flag.flags.evaluate``, the tenant's share of the replica,
metrics, logs) and the JSON on the wire is exactly OFREP's, written here.

HTTP status: an RPC cannot set one, and gRPC codes map to statuses with a
``google.rpc.Status`` body, not OFREP's. So every OFREP answer, failures
included, is an OK RPC whose ``x-ofrep-status`` response header
(:data:`STATUS_HEADER`) names its status; the gateway's ``ofrep_status`` filter
makes it the HTTP status and removes it. Callers that are refused before
evaluation (no token, no permission, too busy) get the kit's errors as usual:
401, 403, 429.

Evaluation is the flag service's one path: the replica's in-memory flag sets
(:mod:`services.flag.flagsets`), each flag as its own type with ``FlagdCore``
(:meth:`~services.flag.evaluator.FlagSetEvaluator.evaluate`), the context bounded by
:mod:`services.flag.limits` and given the caller's ``tenant``, as flagd's protocol
does (:mod:`services.flag.flagd`). OFREP names no flag type (its ADR 0003), so the
value is sent with its JSON type and a provider finds a type mismatch itself:
numbers keep the stored variant's form, integers for a flag whose variants are all
whole, floats otherwise. A disabled flag answers reason ``DISABLED`` with no value
(the provider serves its code default, ADR 0006) and an empty variant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import grpc
from google.api import httpbody_pb2
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from orchestrall.flag.v1 import flag_service_pb2 as pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as pb_grpc
from services.flag import limits
from services.flag.evaluator import FlagSetEvaluator, Resolution
from services.flag.flagd import caller_tenant
from services.flag.flagsets import FlagSets
from services.flag.usage import UsageCounter

#: Response header naming the HTTP status of an OFREP answer (the gateway applies and removes it).
STATUS_HEADER = "x-ofrep-status"
JSON = "application/json"

_Failure = tuple[str, str]


def _encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def evaluation_context(body: httpbody_pb2.HttpBody, tenant: str) -> dict[str, Any] | _Failure:
    """Reads OFREP's evaluation request (``{"context": {...}}``) for the caller's tenant.

    An empty body, or one without ``context``, is an empty context (the OFREP providers
    send ``{}`` when the caller gave none).

    Returns:
        The evaluation context with ``tenant`` set, or ``(error code, details)``:
        ``PARSE_ERROR`` when the body is not a JSON object, ``INVALID_CONTEXT`` when
        ``context`` is not an object or breaks the bounds of :func:`limits.context_problem`.
    """
    if not body.data.strip():
        document: Any = {}
    else:
        try:
            document = json.loads(body.data, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # RecursionError: nested past the decoder's depth
            return ErrorCode.PARSE_ERROR.value, "the request body is not JSON"
    if not isinstance(document, dict):
        return ErrorCode.PARSE_ERROR.value, 'the request body must be a JSON object, {"context": {...}}'
    context = document.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        return ErrorCode.INVALID_CONTEXT.value, "context must be a JSON object"
    problem = limits.context_problem(context, len(body.data))
    if problem is not None:
        return ErrorCode.INVALID_CONTEXT.value, problem
    context["tenant"] = tenant
    return context


def _value(flags: FlagSetEvaluator, key: str, result: Resolution) -> Any:
    """The served variant's value as stored; numbers as integers when every variant of the flag is whole."""
    variants = flags.definitions[key]["variants"]
    value = variants.get(result.variant, result.value)
    if flags.kinds[key] != "float" or isinstance(value, bool):
        return value
    if all(float(number).is_integer() for number in variants.values()):
        return int(value)
    return float(value)


def _failure(key: str | None, error_code: str, details: str) -> dict[str, Any]:
    item: dict[str, Any] = {} if key is None else {"key": key}
    item.update(errorCode=error_code, errorDetails=details)
    return item


def evaluation(flags: FlagSetEvaluator, key: str, result: Resolution) -> dict[str, Any]:
    """Returns one OFREP evaluation: ``evaluationSuccess`` or ``evaluationFailure``."""
    if result.reason == Reason.ERROR:
        code = result.error_code or ErrorCode.GENERAL.value
        return _failure(key, code, f"flag {key!r} could not be evaluated: {code.lower().replace('_', ' ')}")
    item: dict[str, Any] = {"key": key}
    if result.reason != Reason.DISABLED:
        item["value"] = _value(flags, key, result)
    item.update(reason=result.reason, variant=result.variant, metadata={})
    return item


def etag_of(body: bytes) -> str:
    """Returns the strong entity tag of a bulk answer (RFC 9110 section 8.8.3): a digest of its bytes."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Tells whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def _header(metadata: Iterable[tuple[str, str | bytes]] | None, wanted: str) -> str | None:
    for name, value in metadata or ():
        if name == wanted:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


class OfrepService(pb_grpc.OfrepServiceServicer):
    """``orchestrall.flag.v1.OfrepService``: OFREP's two evaluation endpoints.

    Args:
        flag_sets: This replica's in-memory flag sets.
        usage: This replica's evaluation counts.
    """

    def __init__(self, flag_sets: FlagSets, usage: UsageCounter) -> None:
        self._sets = flag_sets
        self._usage = usage

    def _evaluate(
        self, tenant: str, flags: FlagSetEvaluator, key: str, context: dict[str, Any]
    ) -> Resolution:
        result = flags.evaluate(key, context)
        self._usage.record(tenant, key, result.variant, result.reason)
        return result

    @staticmethod
    async def _answer(
        context: grpc.aio.ServicerContext, status: int, document: Any, *headers: tuple[str, str]
    ) -> httpbody_pb2.HttpBody:
        await context.send_initial_metadata(((STATUS_HEADER, str(status)), *headers))
        if document is None:
            return httpbody_pb2.HttpBody()
        return httpbody_pb2.HttpBody(content_type=JSON, data=_encode(document))

    async def EvaluateOfrepFlag(
        self, request: pb.EvaluateOfrepFlagRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Evaluates the caller's flag ``key``: 200, 400 (failed) or 404 (``FLAG_NOT_FOUND``)."""
        tenant = caller_tenant()
        flags = self._sets.of(tenant)
        key = request.key
        if key not in flags:
            failure = _failure(key, ErrorCode.FLAG_NOT_FOUND.value, f"flag {key!r} was not found")
            return await self._answer(context, 404, failure)
        evaluation_ctx = evaluation_context(request.body, tenant)
        if isinstance(evaluation_ctx, tuple):
            return await self._answer(context, 400, _failure(key, *evaluation_ctx))
        item = evaluation(flags, key, self._evaluate(tenant, flags, key, evaluation_ctx))
        return await self._answer(context, 400 if "errorCode" in item else 200, item)

    async def EvaluateOfrepFlags(
        self, request: pb.EvaluateOfrepFlagsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Evaluates every flag of the caller's: 200 with an ``ETag``, 304 when it matches, or 400."""
        tenant = caller_tenant()
        flags = self._sets.of(tenant)
        evaluation_ctx = evaluation_context(request.body, tenant)
        if isinstance(evaluation_ctx, tuple):
            return await self._answer(context, 400, _failure(None, *evaluation_ctx))
        items = [
            evaluation(flags, key, self._evaluate(tenant, flags, key, evaluation_ctx))
            for key in sorted(flags.kinds)
        ]
        body = _encode({"flags": items, "metadata": {}})
        etag = etag_of(body)
        if matches(_header(context.invocation_metadata(), "if-none-match"), etag):
            return await self._answer(context, 304, None, ("etag", etag))
        await context.send_initial_metadata(((STATUS_HEADER, "200"), ("etag", etag)))
        return httpbody_pb2.HttpBody(content_type=JSON, data=body)


def register(server: grpc.aio.Server, flag_sets: FlagSets, usage: UsageCounter) -> None:
    """Adds the OFREP service, over ``flag_sets``, counting evaluations in ``usage``, to ``server``."""
    pb_grpc.add_OfrepServiceServicer_to_server(OfrepService(flag_sets, usage), server)
