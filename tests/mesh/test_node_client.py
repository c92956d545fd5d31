"""The README's Node quick start, run as written with @grpc/grpc-js against the gateway.

The script is the ``js`` block under "Through Node" in README.md, so the quick start cannot
drift from what works. It runs from ``tests/mesh/node``, whose ``node_modules`` ``make test``
installs from the committed lock file (``npm ci``; nothing is fetched while the tests run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from services.cli.stack import Stack
from tests.conftest import unreachable
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).resolve().parents[2]
NODE_PROJECT = Path(__file__).with_name("node")


def _quick_start() -> str:
    """The first ``js`` block after the README's "Through Node" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Through Node", 1)[1]
    match = re.search(r"```js\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no js block under 'Through Node'"
    return match.group(1)


def test_the_readme_node_quick_start_creates_lists_and_reads_the_refusal(stack: Stack) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_PROJECT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        unreachable("node with tests/mesh/node/node_modules (make node)", FileNotFoundError(NODE_PROJECT))
    with httpx.Client(base_url=stack.config.gateway_url, timeout=30) as http:
        tenant = sign_up(http, "node")
    environment = {
        **os.environ,
        "GATEWAY": f"127.0.0.1:{stack.config.http_port}",
        "TENANT": tenant.tenant,
        "TOKEN": tenant.token,
        "DESCRIPTORS": str(ROOT / "gen" / "orchestrall.binpb"),
    }
    # --input-type=module: imports resolve from the working directory, tests/mesh/node.
    ran = subprocess.run(
        [node, "--input-type=module"],
        input=_quick_start(),
        cwd=NODE_PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        f"tenants/{tenant.tenant}/agents/planner [ 'Planner' ]",
        "NOT_FOUND AGENT_NOT_FOUND agent.orchestrall.dev",
    ]
