"""The guard every RPC handler runs inside: admission, the principal, error mapping, the audit context.

The guard is an interceptor applied once, when the service registers its
servicer (:class:`GuardedRegistrar`): each method's handler is wrapped at
start-up with its access rule already looked up, so a call pays for a dict-free
closure, not for an interceptor chain that rebuilds handlers on every call (the
pattern of grpc/grpc ``examples/python/interceptors``, where the rejecting
handler is built once). Per call it:

1. opens the audit context of audited RPCs (:mod:`services.kit.audit`);
2. admits the caller per the RPC's rule (:mod:`services.kit.auth`): a verified
   JWT whose roles grant the permission, or a mesh identity the policy table
   allows, from the TLS peer certificate (or Istio's sidecar's header, :func:`caller_identity`);
3. binds the :class:`~services.kit.auth.Principal` for the handler;
4. refuses a request that breaks its fields' rules in the contract, or that
   could not be decoded (:mod:`services.kit.validation`), before any work, and
   one of a tenant that has too many calls in progress already;
5. turns a :class:`~services.kit.errors.DomainError` into ``google.rpc.Status``
   (with ``ErrorInfo``) and any other exception into a bare INTERNAL, logged; no
   traceback or SQL reaches the client (AIP-193);
6. records the call: its duration in the service's metrics, one JSON log line
   (logger ``orchestrall.rpc``) and the tenant on the trace's span
   (:mod:`services.kit.metrics`, :mod:`services.kit.logs`, :mod:`services.kit.tracing`).

Unary-unary and unary-stream handlers are guarded; a client- or bidi-streaming
method is refused at registration, so no handler can escape the guard. The
health and reflection services are registered on the server directly: they are
open to any mesh peer (mTLS is still required).
"""

from __future__ import annotations

import collections
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from services.kit import auth, validation
from services.kit.audit import AuditLog
from services.kit.calls import CURRENT_RPC
from services.kit.config import MeshSettings
from services.kit.errors import DomainError, TooBusy, Unauthenticated, internal_status
from services.kit.logs import RpcLog
from services.kit.metrics import RpcMetrics
from services.kit.mtls import peer_spiffe_id, spiffe_id
from services.kit.policy import may_call
from services.kit.sidecar import forwarded_spiffe_id
from services.kit.tracing import end_server_span, traced, tracing_enabled

log = logging.getLogger(__name__)

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
#: Reads the SPIFFE ID of a call's caller (None: no mesh identity).
PeerIdentity = Callable[[grpc.aio.ServicerContext], str | None]


def tls_peer_identity(context: grpc.aio.ServicerContext) -> str | None:
    """Returns the SPIFFE ID of the call's TLS peer certificate (the kit's own mTLS), or None."""
    return peer_spiffe_id(context.auth_context())


def caller_identity(settings: MeshSettings, service: str) -> PeerIdentity:
    """Returns how service ``service`` learns its callers' SPIFFE IDs, chosen once at start-up.

    With ``mesh_tls=kit`` from the peer certificate; with ``mesh_tls=istio`` from the
    ``x-forwarded-client-cert`` element its own sidecar appended (:mod:`services.kit.sidecar`).
    """
    if settings.mesh_tls == "kit":
        return tls_peer_identity
    own = spiffe_id(settings.trust_domain, settings.namespace, service)

    def forwarded(context: grpc.aio.ServicerContext) -> str | None:
        return forwarded_spiffe_id(context.invocation_metadata() or (), own)

    return forwarded


async def abort_with(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    """Ends the call with ``status``, its details in ``grpc-status-details-bin`` (grpc_status)."""
    await context.abort_with_status(rpc_status.to_status(status))


class Guard:
    """Wraps handlers so that they run only for admitted callers and fail with statuses.

    Args:
        domain: ``ErrorInfo.domain`` of this service, ``<service>.orchestrall.dev``.
        rules: Access rule per RPC, from :func:`services.kit.auth.method_rules`.
        verifier: Verifies bearer JWTs.
        trust_domain: SPIFFE trust domain whose service identities are trusted.
        audit: The service's audit log; audited calls are recorded there.
        tenant_concurrency: Unary calls one tenant may have in progress on this server
            at once; one more is refused with RESOURCE_EXHAUSTED (``TENANT_BUSY``), so no
            tenant holds all of a service's work.
        metrics: Where each call's duration is recorded.
        peer_identity: Reads a caller's SPIFFE ID (:func:`caller_identity`); by default from
            the TLS peer certificate.
    """

    def __init__(
        self,
        domain: str,
        rules: Mapping[str, auth.MethodRule],
        verifier: auth.JwtVerifier,
        trust_domain: str,
        audit: AuditLog | None,
        tenant_concurrency: int = 32,
        metrics: RpcMetrics | None = None,
        peer_identity: PeerIdentity = tls_peer_identity,
    ) -> None:
        self._domain = domain
        self._peer_identity = peer_identity
        self._metrics = metrics
        # Whether calls run in spans: decided once, at start-up, from the process's environment, as
        # traced() decides whether to make them; with no span to end, _done skips looking for one.
        self._tracing = tracing_enabled()
        self._rpc_log = RpcLog(traced=self._tracing)
        self._tenant_concurrency = tenant_concurrency
        self._in_flight: dict[str, int] = {}
        self._rules = rules
        self._verifier = verifier
        self._trust_domain = trust_domain
        self._audit = audit
        #: Calls admitted or refused, per method (a benchmark counts peer calls with it).
        self.calls: collections.Counter[str] = collections.Counter()

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """Returns ``handler`` guarded: called once per method, at registration.

        Raises:
            TypeError: The method has no access rule, or streams requests (the kit guards
                unary requests only).
        """
        rule = self._rules.get(method)
        if rule is None:
            raise TypeError(f"{method} has no access rule in the contracts")
        deserialize = validation.lenient(handler.request_deserializer, method.rsplit("/", 1)[1] + " request")
        scoped = scoped_fields(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, rule, handler.unary_unary, scoped),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, rule, handler.unary_stream, scoped),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{method}: only unary requests with a unary or async-generator response are guarded")

    def _unary(self, method: str, rule: auth.MethodRule, inner: Unary, scoped: tuple[str, ...]) -> Unary:
        audit = self._audit if rule.audited else None
        calls = self.calls
        done = self._done

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            began = time.perf_counter()
            calls[method] += 1
            CURRENT_RPC.set(method)
            if audit is not None:
                audit.begin_call(method, request)
            principal = tenant = None
            try:
                principal = await self._admit(rule, method, context)
                auth.set_principal(principal)
                _check(principal, request, scoped)
                tenant = self._enter(principal.tenant)
                response = await inner(request, context)
            except DomainError as error:
                status = error.to_status(self._domain)
                if isinstance(error, TooBusy):
                    context.set_trailing_metadata((("retry-after", str(error.retry_after)),))
            except grpc.aio.AbortError:  # the handler ended the call itself
                code = context.code()
                done(method, code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN", began, principal)
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
                status = internal_status()
            else:
                if audit is not None:
                    await audit.record_unrecorded("OK")
                done(method, "OK", began, principal)
                return response
            finally:
                if tenant is not None:
                    self._leave(tenant)
            code = code_pb2.Code.Name(status.code)
            if audit is not None:
                await audit.record_unrecorded(code)
            done(method, code, began, principal)
            await abort_with(context, status)

        return traced(method, guarded)

    def _done(self, method: str, code: str, began: float, principal: auth.Principal | None) -> None:
        """Records a finished call: metrics, its log line, the tenant on its span."""
        seconds = time.perf_counter() - began
        if self._metrics is not None:
            self._metrics.observe(method, code, seconds)
        tenant = principal.tenant if principal is not None else None
        if self._tracing:
            end_server_span(code, tenant)
        self._rpc_log.write(
            method, code, seconds, tenant, principal.subject if principal is not None else None
        )

    def _streaming(
        self, method: str, rule: auth.MethodRule, inner: Streaming, scoped: tuple[str, ...]
    ) -> Streaming:
        calls = self.calls
        done = self._done

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            began = time.perf_counter()
            calls[method] += 1
            CURRENT_RPC.set(method)
            principal = None
            try:
                principal = await self._admit(rule, method, context)
                auth.set_principal(principal)
                _check(principal, request, scoped)
                async for response in inner(request, context):
                    yield response
                done(method, "OK", began, principal)
                return
            except DomainError as error:
                status = error.to_status(self._domain)
            except grpc.aio.AbortError:
                code = context.code()
                done(method, code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN", began, principal)
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
                status = internal_status()
            done(method, code_pb2.Code.Name(status.code), began, principal)
            await abort_with(context, status)

        return guarded

    def _enter(self, tenant: str | None) -> str | None:
        """Counts a call of ``tenant`` in progress; returns the tenant to release, or None for none.

        Raises:
            TooBusy: The tenant has :attr:`_tenant_concurrency` calls in progress already.
        """
        if tenant is None:
            return None
        count = self._in_flight.get(tenant, 0)
        if count >= self._tenant_concurrency:
            raise TooBusy(
                "TENANT_BUSY",
                f"the tenant has {count} calls in progress on this service, the most it may; retry later",
                retry_after=1,
                metadata={"limit": str(self._tenant_concurrency)},
            )
        self._in_flight[tenant] = count + 1
        return tenant

    def _leave(self, tenant: str) -> None:
        count = self._in_flight[tenant] - 1
        if count:
            self._in_flight[tenant] = count
        else:
            del self._in_flight[tenant]

    def _peer_service(self, context: grpc.aio.ServicerContext) -> str | None:
        """The mesh service name of the caller, or None (read only when a rule needs it)."""
        return auth.service_name_of(self._peer_identity(context), self._trust_domain)

    async def _admit(
        self, rule: auth.MethodRule, method: str, context: grpc.aio.ServicerContext
    ) -> auth.Principal:
        """Returns the caller's principal.

        Raises:
            Unauthenticated: No usable credentials.
            PermissionDenied: The caller may not call ``method``.
        """
        if rule.internal:
            service = self._peer_service(context)
            if service is None or not may_call(service, method):
                raise auth.deny_service(service, method)
            return auth.Principal(kind="service", subject=service)
        if rule.anonymous:  # identity plays no part; a token sent along is ignored, as at the gateway
            return auth.ANONYMOUS
        metadata = context.invocation_metadata() or ()
        token = auth.bearer_token(metadata)
        if token is not None:
            principal = self._verifier.cached(token) or await self._verifier.verify(token)
            auth.require_permission(principal, rule.permission)
            return principal
        service = self._peer_service(context)
        if service is not None and may_call(service, method):
            tenant = auth.metadata_value(metadata, auth.TENANT_METADATA_KEY)
            return auth.Principal(kind="service", subject=service, tenant=tenant)
        raise Unauthenticated("MISSING_CREDENTIALS", "a bearer token is required (RFC 6750)")


#: Request fields whose resource name says which tenant a request is for (AIP-131, AIP-132...).
SCOPED_FIELDS = ("name", "parent")


def scoped_fields(deserialize: Callable[[bytes], Any]) -> tuple[str, ...]:
    """Returns which of :data:`SCOPED_FIELDS` the request type of a method has, read once at registration.

    ``deserialize`` is the generated ``<Request>.FromString``, bound to the message class; a request type
    never gains fields while the server runs, and looking for a field a message lacks costs a call an
    exception (2 µs on the bench machine). Without a message class at hand, both fields are looked for.
    """
    message_type = getattr(deserialize, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    if descriptor is None:
        return SCOPED_FIELDS
    return tuple(name for name in SCOPED_FIELDS if name in descriptor.fields_by_name)


def _check(principal: auth.Principal, request: Any, scoped: tuple[str, ...] = SCOPED_FIELDS) -> None:
    """Refuses bad requests before any work: undecodable, for another tenant, breaking field rules.

    Authorization comes before validation (AIP-211), so a caller learns nothing of another
    tenant's resources from field violations; the handler checks the tenant again on the
    names it parses.

    Raises:
        PermissionDenied: The request's ``name`` or ``parent`` is of a tenant other than the
            caller's (reason ``TENANT_MISMATCH``).
        InvalidArgument: With the field violations, or reason ``MALFORMED_REQUEST``.
    """
    if isinstance(request, validation.Unreadable):
        raise request.error()
    if principal.tenant is not None:
        for field in scoped:
            value = getattr(request, field, None)
            if isinstance(value, str) and value.startswith("tenants/"):
                auth.require_tenant(value.split("/", 2)[1])
    validation.check(request)


class GuardedRegistrar:
    """Stands in for the server when a service registers its servicers, guarding every method.

    Generated ``add_<Service>Servicer_to_server`` functions call
    :meth:`add_generic_rpc_handlers` and then :meth:`add_registered_method_handlers`
    with the method table; the table is what gets guarded and registered on the
    real server.

    Args:
        server: The real server.
        guard: The service's guard.
    """

    def __init__(self, server: grpc.aio.Server, guard: Guard) -> None:
        self._server = server
        self._guard = guard
        self._unguarded: set[str] = set()
        self.methods: set[str] = set()

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Notes generic handlers; each must be followed by its method table."""
        for handler in handlers:
            name = getattr(handler, "service_name", lambda: "")()
            self._unguarded.add(name)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Guards each method of a service and registers them on the server."""
        guarded = {
            name: self._guard.wrap(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, guarded),))
        self._server.add_registered_method_handlers(service_name, guarded)
        self._unguarded.discard(service_name)
        self.methods |= {f"/{service_name}/{name}" for name in guarded}

    def check(self) -> None:
        """Raises TypeError when a generic handler came without a method table (it would be unguarded)."""
        if self._unguarded:
            raise TypeError(f"handlers registered without a method table: {sorted(self._unguarded)}")
