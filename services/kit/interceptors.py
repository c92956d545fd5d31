"""The two server interceptors every service runs, outermost first.

* :class:`ErrorInterceptor` turns :class:`~services.kit.errors.DomainError` into
  ``google.rpc.Status`` (with ``ErrorInfo``) and any other exception into a bare
  INTERNAL, logging it; no traceback or SQL reaches the client.
* :class:`AuthInterceptor` admits the caller per the RPC's access rule and binds
  the :class:`~services.kit.auth.Principal` for the handler.

Only unary-unary RPCs exist in the contracts. A streaming handler would
escape both checks, so the auth interceptor refuses it (UNIMPLEMENTED) until
the kit learns to guard streams; the health service's Watch stream is the one
open exception.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2

from services.kit import auth
from services.kit.audit import AuditLog
from services.kit.errors import DomainError, PermissionDenied, Unauthenticated, internal_status
from services.kit.mtls import peer_spiffe_id
from services.kit.policy import may_call

log = logging.getLogger(__name__)

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
# Infrastructure RPCs open to any mesh peer (mTLS is still required).
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _wrap(handler: grpc.RpcMethodHandler, behavior: Unary) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def abort_with(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    """Ends the call with ``status``, its details in ``grpc-status-details-bin``."""
    await context.abort(
        grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == status.code)),
        status.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps handler errors to statuses (AIP-193) and opens each call's audit context.

    Args:
        domain: ``ErrorInfo.domain`` of this service, ``<service>.orchestrall.dev``.
        rules: Access rules per RPC; say which calls are audited.
        audit: The service's audit log; failed audited calls are recorded here.
    """

    def __init__(self, domain: str, rules: dict[str, auth.MethodRule], audit: AuditLog | None) -> None:
        self._domain = domain
        self._rules = rules
        self._audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wraps the unary handler of ``details.method`` so domain errors become statuses."""
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner: Unary = handler.unary_unary
        method = details.method
        rule = self._rules.get(method)
        audit = self._audit if rule is not None and rule.audited else None

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if audit is not None:
                audit.begin_call(method, request)
            try:
                response = await inner(request, context)
            except DomainError as error:
                status = error.to_status(self._domain)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
                status = internal_status()
            else:
                if audit is not None:
                    await audit.record_unrecorded("OK")
                return response
            if audit is not None:
                await audit.record_unrecorded(code_pb2.Code.Name(status.code))
            await abort_with(context, status)

        return _wrap(handler, guarded)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call, binds its principal and checks its permission (zero trust: every hop).

    Args:
        rules: Access rule per RPC, from :func:`services.kit.auth.method_rules`.
        verifier: Verifies bearer JWTs.
        trust_domain: SPIFFE trust domain whose service identities are trusted.
    """

    def __init__(
        self, rules: dict[str, auth.MethodRule], verifier: auth.JwtVerifier, trust_domain: str
    ) -> None:
        self._rules = rules
        self._verifier = verifier
        self._trust_domain = trust_domain

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wraps the handler of ``details.method`` so it runs only for an admitted caller."""
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if handler.unary_unary is None:
            log.error("refusing streaming RPC %s: the kit authenticates unary RPCs only", method)
            return None
        rule = self._rules.get(method)
        inner: Unary = handler.unary_unary

        async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if rule is None:
                raise PermissionDenied("UNKNOWN_METHOD", f"{method} has no access rule")
            principal = await self._authenticate(rule, method, context)
            auth.set_principal(principal)
            if principal.kind == "user" and not rule.anonymous:
                auth.require_permission(principal, rule.permission)
            return await inner(request, context)

        return _wrap(handler, authenticated)

    def _peer_service(self, context: grpc.aio.ServicerContext) -> str | None:
        """The mesh service name of the TLS peer, or None (read only when a rule needs it)."""
        return auth.service_name_of(peer_spiffe_id(context.auth_context()), self._trust_domain)

    async def _authenticate(
        self, rule: auth.MethodRule, method: str, context: grpc.aio.ServicerContext
    ) -> auth.Principal:
        metadata = tuple(context.invocation_metadata() or ())
        if rule.internal:
            service = self._peer_service(context)
            if service is None or not may_call(service, method):
                raise auth.deny_service(service, method)
            return auth.Principal(kind="service", subject=service)
        if rule.anonymous:  # identity plays no part; a token sent along is ignored, as at the gateway
            return auth.ANONYMOUS
        token = auth.bearer_token(metadata)
        if token is not None:
            return await self._verifier.verify(token)
        service = self._peer_service(context)
        if service is not None and may_call(service, method):
            tenant = auth.metadata_value(metadata, auth.TENANT_METADATA_KEY)
            return auth.Principal(kind="service", subject=service, tenant=tenant)
        raise Unauthenticated("MISSING_CREDENTIALS", "a bearer token is required (RFC 6750)")
