"""Who is calling: JWT verification, the per-RPC access rules, the principal.

Access rules come from the contracts: an RPC with ``(orchestrall.api.v1.access)
.anonymous`` needs no token; an RPC without a ``google.api.http`` annotation is
internal and only services listed in :mod:`services.kit.policy` may call it;
every other RPC needs a valid JWT issued by the auth service, or a service
identity that the policy table allows, acting for the tenant named in the
``orchestrall-tenant`` metadata. A token's roles must grant the RPC's
``permission`` (:mod:`services.kit.roles`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import jwt
from google.api import annotations_pb2 as http_annotations
from google.protobuf.descriptor import ServiceDescriptor

from orchestrall.api.v1 import annotations_pb2 as access_annotations
from services.kit.contracts import adopted_internal, adopted_permissions
from services.kit.errors import PermissionDenied, Unauthenticated
from services.kit.roles import permissions_of

TENANT_METADATA_KEY = "orchestrall-tenant"
# Permission verbs of RPCs that change state; their calls are audited.
MUTATING_VERBS = frozenset({"create", "update", "delete", "import"})
SIGNING_ALGORITHMS = ["EdDSA"]
# Verified tokens remembered by a verifier (LRU), each until its own `exp`.
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one RPC.

    Attributes:
        kind: ``user`` (a JWT), ``service`` (a mesh identity) or ``anonymous``.
        subject: JWT ``sub`` or the service name.
        tenant: Tenant ID the call is scoped to, or None (anonymous, internal calls).
        roles: Roles from the JWT ``roles`` claim.
        token: The raw JWT, for forwarding to peers; empty for services.
        industry: The tenant's industry from the JWT ``industry`` claim (auth puts the
            tenant's ``industry`` there when it issues the token); empty without one.
    """

    kind: str
    subject: str
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    token: str = field(default="", repr=False)
    industry: str = ""


ANONYMOUS = Principal(kind="anonymous", subject="anonymous")
_current: ContextVar[Principal] = ContextVar("orchestrall_principal", default=ANONYMOUS)


def current_principal() -> Principal:
    """The principal of the RPC being handled (set by the auth interceptor)."""
    return _current.get()


def set_principal(principal: Principal) -> None:
    """Binds the principal for the rest of the current RPC's task."""
    _current.set(principal)


def require_tenant(tenant: str) -> Principal:
    """Checks that the caller acts for ``tenant`` and returns the principal.

    Raises:
        PermissionDenied: The caller is scoped to another tenant, or to none.
    """
    principal = current_principal()
    if principal.tenant is None or principal.tenant != tenant:
        raise PermissionDenied(
            "TENANT_MISMATCH",
            f"the caller may not access resources of tenant {tenant!r}",
            metadata={"tenant": tenant},
        )
    return principal


@dataclass(frozen=True)
class MethodRule:
    """How callers are admitted to one RPC."""

    anonymous: bool
    internal: bool
    permission: str
    audited: bool


def method_rules(services: Iterable[ServiceDescriptor]) -> dict[str, MethodRule]:
    """Reads each RPC's access rule from its descriptor options.

    An RPC of an adopted protocol (another project's contract, such as flagd's) has
    no options of ours; its rule is its permission from
    :func:`services.kit.contracts.adopted_permissions`: it needs a token, it is not
    internal (it has no REST binding, native gRPC only) and it is not audited. One the
    adopting module lists as internal (:func:`services.kit.contracts.adopted_internal`) is
    internal: only a mesh identity the policy table grants it may call it.

    Returns:
        ``/package.Service/Method`` -> rule.
    """
    adopted = adopted_permissions()
    adopted_internal_rpcs = adopted_internal()
    rules: dict[str, MethodRule] = {}
    for service in services:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            if path in adopted_internal_rpcs:
                rules[path] = MethodRule(anonymous=False, internal=True, permission="", audited=False)
                continue
            if path in adopted:
                rules[path] = MethodRule(
                    anonymous=False, internal=False, permission=adopted[path], audited=False
                )
                continue
            options = method.GetOptions()
            access = options.Extensions[access_annotations.access]
            http = (
                options.Extensions[http_annotations.http]
                if options.HasExtension(http_annotations.http)
                else None
            )
            verb = access.permission.rsplit(".", 1)[-1]
            rules[path] = MethodRule(
                anonymous=access.anonymous,
                internal=http is None,
                permission=access.permission,
                audited=verb in MUTATING_VERBS or (access.anonymous and http is not None and bool(http.post)),
            )
    return rules


JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]


class JwtVerifier:
    """Verifies JWTs against a JWKS that is fetched lazily and refreshed.

    The key set is fetched on first use, again when a token names an unknown
    ``kid`` (at most once per ``min_refresh_seconds``, so garbage tokens cannot
    make it hammer the auth service), and after ``max_age_seconds``.

    Args:
        fetch_jwks: Returns the JWKS as a dict (``{"keys": [...]}``, RFC 7517).
        issuer: Required ``iss``.
        audience: Required ``aud``.
    """

    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        *,
        issuer: str,
        audience: str,
        max_age_seconds: float = 300.0,
        min_refresh_seconds: float = 5.0,
    ) -> None:
        self._fetch = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def _refresh(self, force: bool) -> None:
        if not force and time.monotonic() - self._fetched_at < self._max_age:
            return
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < self._min_refresh or (not force and age < self._max_age):
                return
            jwks = await self._fetch()
            keys = {}
            for entry in jwks.get("keys", []):
                if entry.get("kid") and entry.get("use", "sig") == "sig":
                    keys[entry["kid"]] = jwt.PyJWK.from_dict(entry)
            self._keys = keys
            self._fetched_at = time.monotonic()

    def cached(self, token: str) -> Principal | None:
        """Returns the principal of a token verified before and not yet expired, or None.

        The fast path of every call after a client's first: a dict lookup, no signature check.
        """
        cached = self._verified.get(token)
        if cached is None or time.time() >= cached[0]:
            return None
        return cached[1]

    async def verify(self, token: str) -> Principal:
        """Verifies signature, ``exp``, ``iat``, ``iss`` and ``aud`` (RFC 7519 section 7.2).

        Returns:
            A ``user`` principal with the token's ``sub``, ``tenant`` and ``roles``.

        Tokens that passed are remembered until their ``exp`` (at most
        ``VERIFIED_CACHE_SIZE`` of them), so a client's repeated calls cost one
        signature check, not one per call.

        Raises:
            Unauthenticated: The token is malformed, unsigned, signed by an unknown
                key, expired, or for another issuer or audience.
        """
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[0]:
                self._verified.move_to_end(token)
                return cached[1]
            del self._verified[token]
        principal, expires = await self._verify(token)
        self._verified[token] = (expires, principal)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("INVALID_TOKEN", "the bearer token is not a JWT") from None
        if header.get("alg") not in SIGNING_ALGORITHMS:
            raise Unauthenticated("INVALID_TOKEN", "the token's signing algorithm is not accepted")
        kid = header.get("kid")
        await self._refresh(force=False)
        if kid not in self._keys:
            await self._refresh(force=True)
        key = self._keys.get(kid or "")
        if key is None:
            raise Unauthenticated("UNKNOWN_SIGNING_KEY", "the token is signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=SIGNING_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("TOKEN_EXPIRED", "the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated("INVALID_TOKEN", f"the token is not valid: {error}") from None
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated("INVALID_TOKEN", "the token has no tenant claim")
        roles = claims.get("roles") or []
        industry = claims.get("industry")
        principal = Principal(
            kind="user",
            subject=claims["sub"],
            tenant=tenant,
            roles=tuple(roles),
            token=token,
            industry=industry if isinstance(industry, str) else "",
        )
        return principal, float(claims["exp"])


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """Returns the token of an ``authorization: Bearer <token>`` header (RFC 6750), or None."""
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def metadata_value(metadata: Iterable[tuple[str, str | bytes]], wanted: str) -> str | None:
    """Returns the first string value of a metadata key, or None."""
    for key, value in metadata:
        if key == wanted and isinstance(value, str):
            return value
    return None


def service_name_of(spiffe: str | None, trust_domain: str) -> str | None:
    """Returns the service account name of a SPIFFE ID in our trust domain, or None."""
    prefix = f"spiffe://{trust_domain}/"
    if not spiffe or not spiffe.startswith(prefix):
        return None
    parts = spiffe[len(prefix) :].split("/")
    if len(parts) == 4 and parts[0] == "ns" and parts[2] == "sa":
        return parts[3]
    return None


def require_permission(principal: Principal, permission: str) -> None:
    """Checks that a user principal's roles grant ``permission``.

    Raises:
        PermissionDenied: ``MISSING_PERMISSION``; the permission is named in the metadata.
    """
    if permission not in permissions_of(principal.roles):
        raise PermissionDenied(
            "MISSING_PERMISSION",
            f"the caller's roles {list(principal.roles)} do not grant {permission}",
            metadata={"permission": permission},
        )


def deny_service(service: str | None, method: str) -> PermissionDenied:
    """The error for a service identity calling an RPC it is not allowed."""
    return PermissionDenied(
        "SERVICE_NOT_ALLOWED",
        f"caller {service or 'unknown'!r} may not call {method}",
        metadata={"method": method},
    )
