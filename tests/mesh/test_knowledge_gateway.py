"""Knowledge bases through Envoy: a PDF uploaded as base64 ``bytes`` in JSON, ingested, searched, cited."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from services.cli.stack import Stack
from tests.mesh.conftest import auth, run_to_end
from tests.mesh.test_access_gateway import sign_up
from tests.service.test_agent_knowledge import pdf_of

pytestmark = pytest.mark.mesh


def _until_done(http: httpx.Client, name: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        document = http.get(f"/v1/{name}", headers=headers).json()
        if document["state"] in ("STATE_READY", "STATE_FAILED"):
            return dict(document)
        assert time.monotonic() < deadline, document
        time.sleep(0.1)


def test_a_pdf_uploaded_over_rest_is_ingested_searched_and_cited(stack: Stack, http: httpx.Client) -> None:
    signed = sign_up(http, "kb")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}"
    made = http.post(
        f"{base}/knowledgeBases?knowledgeBaseId=handbook", json={"displayName": "Handbook"}, headers=headers
    )
    assert made.status_code == 200, made.text
    pdf = pdf_of("Night shifts start at 22:00 and end at 06:00.", "Overtime is paid at 150 percent.")
    uploaded = http.post(
        f"{base}/knowledgeBases/handbook/documents?documentId=shifts",
        json={
            "displayName": "Shift rules",
            "mimeType": "application/pdf",
            "content": base64.b64encode(pdf).decode(),
        },
        headers=headers,
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["state"] == "STATE_PENDING" and "content" not in uploaded.json()
    done = _until_done(http, uploaded.json()["name"], headers)
    assert (done["state"], done["chunksDone"], done["chunksTotal"], done["sizeBytes"]) == (
        "STATE_READY",
        2,
        2,
        str(len(pdf)),  # int64 is a string in proto3 JSON
    )
    found = http.post(
        f"{base}/knowledgeBases/handbook:search",
        json={"query": "overtime paid percent", "maxResults": 1},
        headers=headers,
    )
    assert found.status_code == 200, found.text
    (top,) = found.json()["results"]
    assert (top["documentDisplayName"], top["section"], top["text"]) == (
        "Shift rules",
        "page 2",
        "Overtime is paid at 150 percent.",
    )
    listed = http.get(f"{base}/knowledgeBases/handbook/documents", headers=headers).json()
    assert [d["name"] for d in listed["documents"]] == [uploaded.json()["name"]]

    agent = http.post(
        f"{base}/agents?agentId=hr",
        json={
            "instructions": "Look it up with knowledge_search, then answer and name the document.",
            "tools": [f"tenants/{signed.tenant}/knowledgeBases/handbook"],
            "toolChoice": "TOOL_CHOICE_REQUIRED",
            "temperature": 0,
            "maxOutputTokens": 48,
        },
        headers=headers,
    )
    assert agent.status_code == 200, agent.text
    run = run_to_end(http, f"tenants/{signed.tenant}/agents/hr", {"input": "How is overtime paid?"}, headers)
    assert run["state"] == "STATE_SUCCEEDED", run
    result = json.loads(run["toolCalls"][0]["result"])
    assert result["results"][0]["document"] == "Shift rules"
    top = run["citations"][0]
    assert (top["toolCallId"], top["document"], top["documentDisplayName"], top["section"]) == (
        run["toolCalls"][0]["id"],
        uploaded.json()["name"],
        "Shift rules",
        result["results"][0]["section"],
    )
    assert (
        top.get("chunkIndex", 0) == result["results"][0]["chunk"]
        and top["score"] == result["results"][0]["score"]
    )


def test_bad_uploads_are_refused_with_field_violations(stack: Stack, http: httpx.Client) -> None:
    signed = sign_up(http, "kbbad")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}/knowledgeBases"
    assert http.post(f"{base}?knowledgeBaseId=strict", json={}, headers=headers).status_code == 200
    for mime_type, content, field in (
        ("image/png", b"\x89PNG", "document.mime_type"),
        ("text/plain", b"", "document.content"),
        ("text/plain", b"a" * 655_361, "document.content"),
    ):
        refused = http.post(
            f"{base}/strict/documents",
            json={"mimeType": mime_type, "content": base64.b64encode(content).decode()},
            headers=headers,
        )
        assert refused.status_code == 400, refused.text
        violations = [
            v["field"]
            for d in refused.json()["details"]
            if d["@type"].endswith("BadRequest")
            for v in d["fieldViolations"]
        ]
        assert violations == [field], refused.text
    # Over the gateway's 1 MiB body limit, Envoy refuses before the service.
    huge = http.post(
        f"{base}/strict/documents",
        json={"mimeType": "text/plain", "content": base64.b64encode(b"a" * 900_000).decode()},
        headers=headers,
    )
    assert huge.status_code == 413
    assert http.get(f"{base}/strict/documents", headers=headers).json().get("documents", []) == []
