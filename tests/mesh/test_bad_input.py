"""Bad input over every REST operation through Envoy: never a 5xx, never a leaky body.

The cases come from the contracts (:mod:`tests.badinput`); every answer is
either a success or a ``google.rpc.Status`` JSON body with exactly one
``ErrorInfo``, under a 4xx, with nothing of the stack's internals in it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import httpx
import pytest

from services.cli.stack import Stack
from tests.attacks import targets
from tests.badinput import cases, problems
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh
TARGETS = targets()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        yield http


def test_no_bad_input_gets_a_5xx_or_a_leaky_body(client: httpx.Client) -> None:
    owner = sign_up(client, "badin")
    failures: dict[str, list[str]] = collections.defaultdict(list)
    count = 0
    for target in TARGETS:
        for case in cases(target, owner.tenant):
            count += 1
            try:
                response = client.request(
                    case.method,
                    case.path,
                    params=case.query,
                    content=case.body,
                    headers={**auth(owner.token), **case.headers},
                )
            except httpx.RemoteProtocolError as error:  # the gateway closed without answering
                failures[f"{case.operation}: {case.variant}"].append(f"no answer: {error}")
                continue
            found = problems(
                response.status_code,
                response.headers.get("content-type", ""),
                response.text,
                ofrep=case.path.startswith("/ofrep/"),
            )
            if found:
                failures[f"{case.operation}: {case.variant}"] += [*found, response.text[:300]]
    print(f"{count} bad-input cases over {len(TARGETS)} operations")
    assert dict(failures) == {}, f"{len(failures)} of {count} cases went wrong"
