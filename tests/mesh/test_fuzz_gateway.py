"""Contract-driven fuzzing: schemathesis sends what /openapi.json allows (and what it forbids) through Envoy.

Every operation of the document gets cases generated from its schemas by schemathesis
(Hypothesis strategies over the parameters and bodies), positive ones (valid per the
document) and negative ones (each breaks it somewhere), sent with tenant A's token and
A's name in the ``{tenant}`` segment. Half the cases of an operation address A's own
resources (made before, so a Get, Update or Delete finds something); the rest address
names that do not exist. Each answer must:

* not be a server error (5xx): a bad request is the client's fault, and a 500 is a bug;
* conform to the document: the status, content type and body schema of the operation
  (a 200 its response message, an error a ``google.rpc.Status``);
* hold nothing of tenant B, whose resources exist too: neither B's tenant ID nor the
  marker in the names of B's resources.

The budget is fixed and reproducible (``derandomize``: the same cases every run, no
example database): :data:`POSITIVE` and :data:`NEGATIVE` cases per operation. All findings
are collected, then reported at once with a curl command each.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.cli.stack import Stack
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh

#: Cases per operation valid per the document, and cases that break it somewhere.
POSITIVE = 8
NEGATIVE = 3
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Tenant:
    """A tenant of the run: its ID, token, and the IDs of its resources by path parameter."""

    tenant: str
    token: str
    resources: dict[str, str] = field(default_factory=dict)


def _make(http: httpx.Client, owner: Tenant, marker: str) -> None:
    """Creates one resource of each common kind for ``owner``, with ``marker`` in its ID and name."""
    headers = auth(owner.token)
    parent = f"/v1/tenants/{owner.tenant}"
    made = {
        "agent": http.post(
            f"{parent}/agents",
            params={"agentId": f"{marker}-agent"},
            json={"displayName": marker, "model": "smollm2", "instructions": f"Be {marker}."},
            headers=headers,
        ),
        "flag": http.post(
            f"{parent}/flags",
            params={"flagId": f"{marker}-flag"},
            json={
                "description": marker,
                "state": "STATE_ENABLED",
                "variants": {"on": 1},
                "defaultVariant": "on",
            },
            headers=headers,
        ),
        "workflow": http.post(
            f"{parent}/workflows",
            params={"workflowId": f"{marker}-workflow"},
            json={
                "displayName": marker,
                "steps": [
                    {
                        "id": "one",
                        "agentRun": {"agent": f"tenants/{owner.tenant}/agents/{marker}-agent"},
                    }
                ],
            },
            headers=headers,
        ),
        "thread": http.post(
            f"{parent}/threads",
            params={"threadId": f"{marker}-thread"},
            json={"metadata": {"owner": marker}},
            headers=headers,
        ),
    }
    for kind, response in made.items():
        assert response.status_code == 200, (kind, response.text)
        owner.resources[kind] = response.json()["name"].rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> Iterator[tuple[Tenant, Tenant, str]]:
    marker = f"secretb{secrets.token_hex(4)}"
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        a_signed, b_signed = sign_up(http, "fuzza"), sign_up(http, "fuzzb")
        a, b = Tenant(a_signed.tenant, a_signed.token), Tenant(b_signed.tenant, b_signed.token)
        _make(http, a, "fuzz")
        _make(http, b, marker)
        yield a, b, marker


@dataclass
class Findings:
    """What the run found, by kind, and how much it sent."""

    cases: int = 0
    operations: int = 0
    failures: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    unbreakable: list[str] = field(default_factory=list)


def _strategy(operation: Any, a: Tenant, mode: GenerationMode) -> st.SearchStrategy[Any]:
    names = {p.name for p in operation.path_parameters}
    fixed = {"tenant": a.tenant} if "tenant" in names else {}
    known = {name: a.resources[name] for name in names if name in a.resources}
    strategies = [operation.as_strategy(mode, path_parameters=fixed or None)]
    if known:
        strategies.append(operation.as_strategy(mode, path_parameters={**fixed, **known}))
    return st.one_of(strategies)


def _check(case: Any, response: Any, findings: Findings, b: Tenant, marker: str) -> None:
    findings.cases += 1
    findings.statuses[response.status_code] = findings.statuses.get(response.status_code, 0) + 1
    try:
        case.validate_response(response, checks=CHECKS)
    except (FailureGroup, Failure) as error:
        failures = error.exceptions if isinstance(error, FailureGroup) else (error,)
        for failure in failures:
            findings.failures.append(
                f"{case.operation.label} -> {response.status_code}: {failure.title}: "
                f"{failure.message[:400]}\n    {case.as_curl_command()}\n    {response.text[:300]}"
            )
    text = response.text
    if b.tenant in text or marker in text:
        findings.leaks.append(f"{case.operation.label}: {text[:300]}")


def test_every_operation_through_the_gateway(stack: Stack, tenants: tuple[Tenant, Tenant, str]) -> None:
    a, b, marker = tenants
    base = stack.config.gateway_url
    # The token is configured, not generated: negative cases break the request, not its credentials
    # (what a bad or missing token gets is tests/attacks.py's, for every RPC).
    config = schemathesis.Config.from_dict(
        {"headers": {"Authorization": f"Bearer {a.token}"}, "generation": {"with-security-parameters": False}}
    )
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    findings = Findings()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            findings.operations += 1
            modes = [(GenerationMode.POSITIVE, POSITIVE)]
            if len(operation.query) or len(operation.body):
                # Only path segments (strings of any content) leave nothing to break: Hypothesis
                # would search its whole budget for a negative case and find none.
                modes.append((GenerationMode.NEGATIVE, NEGATIVE))
            else:
                findings.unbreakable.append(operation.label)
            for mode, budget in modes:

                @settings(
                    max_examples=budget,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=_strategy(operation, a, mode))
                def send(case: Any) -> None:
                    response = case.call(base_url=base, session=session, headers=auth(a.token), timeout=60)
                    _check(case, response, findings, b, marker)

                try:
                    send()
                except Unsatisfiable:
                    # Nothing of the operation can be made invalid (no parameters, no body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    findings.unbreakable.append(operation.label)
    summary = json.dumps(
        {
            "operations": findings.operations,
            "cases": findings.cases,
            "failures": len(findings.failures),
            "leaks": len(findings.leaks),
            "statuses": dict(sorted(findings.statuses.items())),
            "without negative cases": findings.unbreakable,
        }
    )
    print(f"schemathesis: {summary}")
    assert findings.operations == len([op for item in schema.raw_schema["paths"].values() for op in item])
    assert findings.leaks == [], "\n".join(findings.leaks)
    assert findings.failures == [], f"{summary}\n" + "\n".join(findings.failures)
    # The budget reached the services: most answers are not the gateway's refusals of the token.
    assert findings.statuses.get(200, 0) >= findings.operations // 2


def test_headers_grpc_metadata_cannot_carry_are_dropped(
    stack: Stack, tenants: tuple[Tenant, Tenant, str]
) -> None:
    # Found by the fuzzing above: HTTP allows header names gRPC metadata does not (`~`, `!`) and
    # values outside printable ASCII; passed on, the service refused the call with INTERNAL (500).
    a, _, _ = tenants
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        token = f"Bearer {a.token}".encode()
        extras = [(b"x~odd", b"1"), (b"a!b", b"2"), (b"x-latin", "caf\u00e9".encode())]
        for name, value in extras:
            headers = [(b"authorization", token), (name, value)]
            response = http.get(f"/v1/tenants/{a.tenant}", headers=headers)
            assert response.status_code == 200, (name, response.text)
