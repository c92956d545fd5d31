"""Attacks on every RPC: forged tokens and requests aimed at another tenant's resources.

The RPC list, the resource names and the REST paths all come from the
contracts, so a new RPC is attacked without anyone writing a test for it.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.api import annotations_pb2 as http_annotations
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from services.kit.auth import method_rules
from services.kit.contracts import adopted_permissions, all_descriptors
from services.kit.policy import SERVICE_CALLS

_VARIABLE = re.compile(r"\{([a-z_.]+)(?:=([^}]+))?\}")


def service_descriptors() -> list[Any]:
    """Every gRPC service of the mesh."""
    return [descriptor for descriptors in all_descriptors().values() for descriptor in descriptors]


@dataclass(frozen=True)
class Target:
    """One external RPC that needs a token."""

    service: str
    method: MethodDescriptor
    permission: str
    http_verb: str
    http_path: str
    body: str

    @property
    def full_name(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def request(self, tenant: str) -> Message:
        """A request naming resources of ``tenant`` (every path variable filled)."""
        message = message_factory.GetMessageClass(self.method.input_type)()
        for field_path, pattern in _VARIABLE.findall(self.http_path):
            value = _fill(pattern or "*", tenant)
            *parents, leaf = field_path.split(".")
            holder = message
            for part in parents:
                holder = getattr(holder, part)
            setattr(holder, leaf, value)
        return message

    def rest_path(self, tenant: str) -> str:
        """The REST path of the request for ``tenant``."""
        return _VARIABLE.sub(lambda m: _fill(m.group(2) or "*", tenant), self.http_path)

    @property
    def tenant_scoped(self) -> bool:
        return "tenants/" in self.http_path


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _fill(pattern: str, tenant: str) -> str:
    parts = pattern.split("/")
    filled = [
        tenant if i == 1 and parts[0] == "tenants" else ("x" if p == "*" else p) for i, p in enumerate(parts)
    ]
    return "/".join(filled)


def targets() -> list[Target]:
    """Every RPC with a REST binding that is neither anonymous nor internal."""
    rules = method_rules(service_descriptors())
    found = []
    for service in service_descriptors():
        for method in service.methods:
            rule = rules[f"/{service.full_name}/{method.name}"]
            if (
                rule.anonymous
                or rule.internal
                or f"/{service.full_name}/{method.name}" in adopted_permissions()
            ):
                continue
            http = method.GetOptions().Extensions[http_annotations.http]
            verb = http.WhichOneof("pattern")
            found.append(
                Target(
                    service=service.full_name.split(".")[1],
                    method=method,
                    permission=rule.permission,
                    http_verb=verb.upper(),
                    http_path=getattr(http, verb),
                    body=http.body,
                )
            )
    return found


@dataclass(frozen=True)
class InternalTarget:
    """One internal RPC (no REST binding): only the mesh services the policy table names may call it.

    Attributes:
        service: The service serving it.
        method: Its descriptor.
        callers: The workloads the policy table lets call it.
    """

    service: str
    method: MethodDescriptor
    callers: frozenset[str]

    @property
    def full_name(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def request(self) -> Message:
        """An empty request: callers are refused before any field is read."""
        return message_factory.GetMessageClass(self.method.input_type)()


def internal_targets() -> list[InternalTarget]:
    """Every internal RPC, with the callers the policy table names for it."""
    rules = method_rules(service_descriptors())
    found = []
    # By mesh service: an adopted protocol's package (Envoy's rate limit service) names none.
    for name, descriptors in all_descriptors().items():
        for service in descriptors:
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if rules[path].internal:
                    callers = frozenset(c for c, methods in SERVICE_CALLS.items() if path in methods)
                    found.append(InternalTarget(name, method, callers))
    return found


@dataclass(frozen=True)
class GrpcTarget:
    """One RPC of an adopted protocol (flagd's): native gRPC only, the tenant is the token's."""

    method: MethodDescriptor
    permission: str

    @property
    def full_name(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return self.method.server_streaming

    def request(self) -> Message:
        """An empty request (nothing in it names a tenant)."""
        return message_factory.GetMessageClass(self.method.input_type)()


def grpc_targets() -> list[GrpcTarget]:
    """Every RPC of the protocols the mesh adopts (gRPC only, each needs a token)."""
    rules = method_rules(service_descriptors())
    return [
        GrpcTarget(method, rules[path].permission)
        for service in service_descriptors()
        for method in service.methods
        if (path := f"/{service.full_name}/{method.name}") in adopted_permissions()
    ]


@dataclass(frozen=True)
class Forger:
    """Makes tokens like the auth service's, right or wrong in one way each.

    Attributes:
        private_pem: The auth service's current signing key (PKCS#8 PEM).
        kid: Its key ID.
        issuer: The expected ``iss``.
        audience: The expected ``aud``.
    """

    private_pem: str
    kid: str
    issuer: str
    audience: str

    def claims(self, tenant: str, roles: list[str], **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"tenants/{tenant}/apiKeys/forged",
            "tenant": tenant,
            "roles": roles,
            "scope": " ".join(roles),
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return claims

    def valid(self, tenant: str, roles: list[str], **overrides: Any) -> str:
        """A token the mesh accepts (the control case); ``overrides`` replace claims (a short ``exp``)."""
        return jwt.encode(
            self.claims(tenant, roles, **overrides),
            self.private_pem,
            algorithm="EdDSA",
            headers={"kid": self.kid},
        )

    def attacks(self, tenant: str) -> Iterator[tuple[str, str]]:
        """``(name, token)`` for each way a token must be rejected, all for an owner of ``tenant``."""
        roles = ["owner"]
        sign = self.private_pem
        other = (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            .decode()
        )
        kid = {"kid": self.kid}
        now = int(time.time())
        yield (
            "expired",
            jwt.encode(self.claims(tenant, roles, iat=now - 1200, exp=now - 600), sign, "EdDSA", kid),
        )
        yield "bad signature", jwt.encode(self.claims(tenant, roles), other, "EdDSA", kid)
        yield "alg none", f"{_b64(dict(alg='none', **kid))}.{_b64(self.claims(tenant, roles))}."
        yield "unknown kid", jwt.encode(self.claims(tenant, roles), other, "EdDSA", {"kid": "unknown-kid"})
        yield "wrong aud", jwt.encode(self.claims(tenant, roles, aud="someone-else"), sign, "EdDSA", kid)
        yield (
            "wrong iss",
            jwt.encode(self.claims(tenant, roles, iss="https://evil.example"), sign, "EdDSA", kid),
        )
        yield "garbage", "not.a.jwt"
