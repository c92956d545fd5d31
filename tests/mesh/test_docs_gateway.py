"""The API documentation through Envoy: /openapi.json, Swagger UI at /docs, and real answers that match it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from gateway.docs import ASSETS, CONTENT_SECURITY_POLICY, MAX_BODY_BYTES, DocsFiles
from gateway.openapi import DOCUMENT
from services.cli.stack import Stack
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS30Validator:
    # The document's components travel with the schema, so its $refs resolve.
    return OAS30Validator({**schema, "components": document["components"]})


def test_the_document_is_served_without_a_token(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOCUMENT.read_bytes()


def test_docs_page_and_its_files_come_from_the_gateway(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<script src="/docs/swagger-ui-bundle.js">' in page.text
    assert "<script>" not in page.text  # no inline script: the policy forbids it
    init = http.get("/docs/init.js")
    assert init.status_code == 200 and '"/openapi.json"' in init.text
    assets = DocsFiles.installed(DOCUMENT).assets
    for name, content_type in ASSETS.items():
        served = http.get(f"/docs/{name}")
        assert served.status_code == 200, name
        assert served.headers["content-type"] == content_type
        assert served.content == (assets / name).read_bytes()
        assert len(served.content) < MAX_BODY_BYTES
    # Only GET, and nothing else under /docs without a token.
    assert http.post("/docs").status_code == 401
    assert http.get("/docs/other.js").status_code == 401


def test_real_answers_match_the_documented_schemas(http: httpx.Client) -> None:
    document = json.loads(DOCUMENT.read_text())
    signed = sign_up(http, "docs")
    created = http.post(
        f"/v1/tenants/{signed.tenant}/agents?agentId=doc",
        json={"displayName": "Doc", "model": "smollm2", "instructions": "Be brief."},
        headers=auth(signed.token),
    )
    assert created.status_code == 200, created.text
    get = document["paths"]["/v1/tenants/{tenant}/agents/{agent}"]["get"]
    _validator(document, get["responses"]["200"]["content"]["application/json"]["schema"]).validate(
        created.json()
    )
    listed = http.get(f"/v1/tenants/{signed.tenant}/agents", headers=auth(signed.token))
    listing = document["paths"]["/v1/tenants/{tenant}/agents"]["get"]["responses"]["200"]
    _validator(document, listing["content"]["application/json"]["schema"]).validate(listed.json())
    missing = http.get(f"/v1/tenants/{signed.tenant}/agents/none", headers=auth(signed.token))
    assert missing.status_code == 404
    error = get["responses"]["default"]["content"]["application/json"]["schema"]
    _validator(document, error).validate(missing.json())
    # A schema that must fail: the checks above are not vacuous.
    with pytest.raises(Exception, match="is not of type"):
        _validator(document, error).validate({"code": "five"})
