"""A conversation and agent revisions over REST through Envoy (routes from the contract's annotations)."""

from __future__ import annotations

import httpx
import pytest

from tests.mesh.conftest import auth, run_to_end
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


def test_a_conversation_over_rest_keeps_its_turns_and_revisions(http: httpx.Client) -> None:
    signed = sign_up(http, "chat")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}"
    agent = http.post(
        f"{base}/agents?agentId=dispatcher",
        json={
            "instructions": "You are a dispatcher. Answer briefly.",
            "temperature": 0,
            "maxOutputTokens": 8,
        },
        headers=headers,
    )
    assert agent.status_code == 200, agent.text
    first_revision = agent.json()["revisionId"]
    updated = http.patch(
        f"{base}/agents/dispatcher?updateMask=instructions",
        json={"instructions": "You are a dispatcher. Answer in one short sentence."},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    revisions = http.get(f"{base}/agents/dispatcher/revisions", headers=headers).json()["agentRevisions"]
    assert [r["snapshot"]["revisionId"] for r in revisions] == [updated.json()["revisionId"], first_revision]

    thread = http.post(
        f"{base}/threads?threadId=support", json={"metadata": {"customer": "c-17"}}, headers=headers
    )
    assert thread.status_code == 200, thread.text
    assert thread.json()["metadata"] == {"customer": "c-17"}
    runs = []
    for text in ("My truck is waiting at the Rotterdam hub.", "Where is my truck?"):
        run = run_to_end(
            http,
            f"{base[4:]}/agents/dispatcher",
            {"input": text, "thread": f"tenants/{signed.tenant}/threads/support"},
            headers,
        )
        assert run["state"] == "STATE_SUCCEEDED"
        runs.append(run)
    alone = run_to_end(
        http,
        f"{base[4:]}/agents/dispatcher",
        {"input": "Where is my truck?"},
        headers,
        agentRevision=f"tenants/{signed.tenant}/agents/dispatcher/revisions/{first_revision}",
    )
    assert alone["agentRevision"].endswith(f"/revisions/{first_revision}") and "thread" not in alone
    assert runs[1]["agentRevision"].endswith(f"/revisions/{updated.json()['revisionId']}")
    # The second run's prompt held the first exchange: more input tokens than the same input alone.
    assert int(runs[1]["usage"]["inputTokens"]) > int(alone["usage"]["inputTokens"])

    messages = http.get(f"{base}/threads/support/messages", headers=headers).json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("ROLE_USER", runs[0]["input"]),
        ("ROLE_ASSISTANT", runs[0]["output"]),
        ("ROLE_USER", runs[1]["input"]),
        ("ROLE_ASSISTANT", runs[1]["output"]),
    ]
    assert http.delete(f"{base}/agents/dispatcher", headers=headers).status_code == 200
    assert http.get(f"{base}/agents/dispatcher", headers=headers).status_code == 404
    kept = http.get(f"/v1/{runs[1]['name']}", headers=headers)
    assert kept.status_code == 200 and kept.json()["output"] == runs[1]["output"]
    assert http.delete(f"{base}/threads/support", headers=headers).status_code == 200
    assert http.get(f"{base}/threads/support/messages", headers=headers).status_code == 404
