"""Istio's AuthorizationPolicy semantics, enough to decide requests against rendered policies.

Written from Istio's reference ("Authorization Policy", security.istio.io/v1): CUSTOM, then DENY,
then ALLOW policies; with at least one ALLOW policy on the workload a request must match one of
them; a policy matches when any rule matches; a rule when any of its ``from`` sources and any of
its ``to`` operations match (an absent list matches everything); a source or operation when every
field it sets matches. Strings match exactly, by prefix (``abc*``), by suffix (``*abc``), or ``*``
(any value present). Fields this project does not use raise, so nothing is silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SOURCE_FIELDS = {"principals", "requestPrincipals", "namespaces"}
_OPERATION_FIELDS = {"paths", "methods"}


@dataclass(frozen=True)
class Request:
    """What the sidecar knows of one request.

    Attributes:
        principal: The peer's mTLS identity (``<td>/ns/<ns>/sa/<sa>``), None without mTLS.
        request_principal: ``<iss>/<sub>`` of a JWT that RequestAuthentication verified, or None.
        path: The HTTP path; a gRPC method's is ``/package.Service/Method``.
        method: The HTTP method (gRPC is always POST).
    """

    principal: str | None
    request_principal: str | None
    path: str
    method: str = "POST"

    @property
    def namespace(self) -> str | None:
        """The peer's namespace, from its principal."""
        if self.principal is None:
            return None
        parts = self.principal.split("/")
        return parts[2] if len(parts) == 5 and parts[1] == "ns" else None


def string_matches(value: str | None, patterns: Iterable[str]) -> bool:
    """Istio's string match of one value against a list of patterns (any of them)."""
    if value is None:
        return False
    for pattern in patterns:
        if pattern == "*":
            return True
        if pattern.endswith("*") and value.startswith(pattern[:-1]):
            return True
        if pattern.startswith("*") and value.endswith(pattern[1:]):
            return True
        if value == pattern:
            return True
    return False


def _source_matches(source: Mapping[str, Any], request: Request) -> bool:
    unknown = set(source) - _SOURCE_FIELDS
    if unknown:
        raise NotImplementedError(f"source fields not modelled: {sorted(unknown)}")
    checks = {
        "principals": request.principal,
        "requestPrincipals": request.request_principal,
        "namespaces": request.namespace,
    }
    return all(string_matches(checks[key], patterns) for key, patterns in source.items())


def _operation_matches(operation: Mapping[str, Any], request: Request) -> bool:
    unknown = set(operation) - _OPERATION_FIELDS
    if unknown:
        raise NotImplementedError(f"operation fields not modelled: {sorted(unknown)}")
    checks = {"paths": request.path, "methods": request.method}
    return all(string_matches(checks[key], patterns) for key, patterns in operation.items())


def rule_matches(rule: Mapping[str, Any], request: Request) -> bool:
    """Whether one rule of a policy matches the request."""
    unknown = set(rule) - {"from", "to"}
    if unknown:
        raise NotImplementedError(f"rule fields not modelled: {sorted(unknown)}")
    sources = rule.get("from")
    operations = rule.get("to")
    return (sources is None or any(_source_matches(s["source"], request) for s in sources)) and (
        operations is None or any(_operation_matches(o["operation"], request) for o in operations)
    )


def applies_to(policy: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a policy (in the workload's namespace) selects a workload with these labels."""
    selector = policy.get("spec", {}).get("selector")
    if selector is None:
        return True
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def allowed(policies: Sequence[Mapping[str, Any]], labels: Mapping[str, str], request: Request) -> bool:
    """Whether the workload's sidecar lets the request through.

    Args:
        policies: AuthorizationPolicy objects of the workload's namespace.
        labels: The workload's pod labels.
        request: The request.
    """
    applicable = [p for p in policies if applies_to(p, labels)]
    by_action: dict[str, list[Mapping[str, Any]]] = {"ALLOW": [], "DENY": [], "CUSTOM": [], "AUDIT": []}
    for policy in applicable:
        by_action[policy.get("spec", {}).get("action", "ALLOW")].append(policy)
    if by_action["CUSTOM"]:
        raise NotImplementedError("CUSTOM policies are not modelled")
    for policy in by_action["DENY"]:
        if any(rule_matches(r, request) for r in policy["spec"].get("rules", [])):
            return False
    if not by_action["ALLOW"]:
        return True
    return any(
        rule_matches(r, request) for p in by_action["ALLOW"] for r in p.get("spec", {}).get("rules", [])
    )
