"""What a tenant may store never breaks a later read: List pages are bounded in bytes.

Twenty flags whose targeting rules are each as large as the contract allows
make more than the gateway would transcode in one response; listing them all in
one page of 1,000 still answers, with the pages cut by size and every flag
reached by following ``nextPageToken``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.cli.stack import Stack
from services.flag.limits import MAX_RULE_BYTES
from services.kit.pagination import MAX_PAGE_BYTES
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh
FLAGS = 20


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        yield http


def largest_flag() -> dict[str, object]:
    """A flag whose targeting rule is just under the size limit (one long string literal)."""
    literal = "x" * (MAX_RULE_BYTES - 200)
    return {
        "state": "STATE_ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"==": [{"var": "plan"}, literal]}, "on", "off"]},
    }


def test_a_list_of_the_largest_flags_is_cut_into_pages_by_size(client: httpx.Client) -> None:
    owner = sign_up(client, "stored")
    headers = auth(owner.token)
    for i in range(FLAGS):
        created = client.post(
            f"/v1/tenants/{owner.tenant}/flags",
            params={"flagId": f"big-{i:02}"},
            json=largest_flag(),
            headers=headers,
        )
        assert created.status_code == 200, created.text[:300]
    assert FLAGS * MAX_RULE_BYTES > MAX_PAGE_BYTES  # one page of all of them would be too large

    listed: list[str] = []
    pages = 0
    token = ""
    while True:
        page = client.get(
            f"/v1/tenants/{owner.tenant}/flags",
            params={"pageSize": 1000, "pageToken": token},
            headers=headers,
        )
        assert page.status_code == 200, page.text[:300]
        body = page.json()
        pages += 1
        assert len(page.content) < 2 * MAX_PAGE_BYTES
        listed += [flag["name"].rsplit("/", 1)[1] for flag in body["flags"]]
        token = body.get("nextPageToken", "")
        if not token:
            break
    assert listed == [f"big-{i:02}" for i in range(FLAGS)]
    assert pages == -(-FLAGS * MAX_RULE_BYTES // MAX_PAGE_BYTES)  # as few pages as the budget allows
