"""The CLI as a client of the real stack: each command runs as a subprocess, through Envoy.

Checks what scripts rely on: the output (rich tables, ``--output json``), the exit codes
(services/cli/client/common.py) and the stored credential's 0600 mode under ``$XDG_CONFIG_HOME``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrall.sdk import Client, workflow
from services.cli.stack import Stack, free_port
from tests.mesh.test_sdk_gateway import gateway, sign_up

pytestmark = pytest.mark.mesh
ROOT = Path(__file__).resolve().parents[2]
BRIEF = "Answer in one short sentence."


class Cli:
    """Runs ``orchestrall`` with its own config folder."""

    def __init__(self, config_home: Path) -> None:
        self.config_home = config_home
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
            "XDG_CONFIG_HOME": str(config_home),
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        self.env.pop("ORCHESTRALL_API_KEY", None)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )

    def json(self, *args: str) -> dict:
        ran = self(*args, "--output", "json")
        assert ran.returncode == 0, ran.stderr
        return json.loads(ran.stdout)


@pytest.fixture(scope="module")
async def tenant(stack: Stack) -> tuple[str, str]:
    return await sign_up(stack, "cli")


async def test_login_stores_the_key_0600_under_xdg_config_home(stack: Stack, tenant, tmp_path: Path) -> None:
    name, secret = tenant
    cli = Cli(tmp_path / "config")
    refused = cli("login", "--address", gateway(stack), "--api-key", "oa_not-a-key")
    assert refused.returncode == 3, refused.stderr
    assert not (tmp_path / "config" / "orchestrall" / "credentials.json").exists()
    logged = cli("login", "--address", gateway(stack), "--output", "json", ORCHESTRALL_API_KEY=secret)
    assert logged.returncode == 0, logged.stderr
    assert json.loads(logged.stdout)["tenant"] == name
    stored = tmp_path / "config" / "orchestrall" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert json.loads(stored.read_text())["api_key"] == secret
    # Nobody logged in under another config folder; a dead gateway is a server error.
    assert Cli(tmp_path / "elsewhere")("agents", "list").returncode == 3
    dead = cli("login", "--address", f"127.0.0.1:{free_port()}", "--api-key", secret)
    assert dead.returncode == 5, dead.stderr


@pytest.fixture(scope="module")
def cli(stack: Stack, tenant, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    runner = Cli(tmp_path_factory.mktemp("cli-config"))
    logged = runner("login", "--address", gateway(stack), ORCHESTRALL_API_KEY=tenant[1])
    assert logged.returncode == 0, logged.stderr
    return runner


def test_agents_create_list_get_with_tables_json_and_exit_codes(cli: Cli, tenant) -> None:
    name, _ = tenant
    created = cli("agents", "create", "writer", "--instructions", "Answer in one short sentence.")
    assert created.returncode == 0, created.stderr
    assert f"{name}/agents/writer" in created.stdout
    table = cli("agents", "list")
    assert table.returncode == 0 and "writer" in table.stdout and "display name" in table.stdout
    listed = cli.json("agents", "list")
    assert [a["name"] for a in listed["agents"]] == [f"{name}/agents/writer"]
    assert cli.json("agents", "get", "writer")["instructions"] == "Answer in one short sentence."
    missing = cli("agents", "get", "nobody", "--output", "json")
    assert missing.returncode == 4
    assert json.loads(missing.stderr)["error"]["code"] == "NOT_FOUND"
    bad = cli("agents", "create", "Not_An_ID", "--instructions", "x", "--output", "json")
    assert bad.returncode == 1, bad.stderr
    error = json.loads(bad.stderr)["error"]
    assert error["reason"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in error["fieldViolations"]] == ["agent_id"]
    assert cli("agents", "create").returncode == 2  # a usage error: the ID is missing


def test_run_streams_the_reply_and_waits_with_json(cli: Cli) -> None:
    assert cli("agents", "create", "helper", "--instructions", BRIEF).returncode == 0
    streamed = cli("run", "helper", "Say hello to the team.", "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip()
    ended = cli.json("run", "helper", "Say hello again.")
    assert ended["state"] == "STATE_SUCCEEDED" and ended["output"]
    assert cli("run", "nobody", "hi").returncode == 4


def test_flags_set_get_list(cli: Cli, tenant) -> None:
    name, _ = tenant
    created = cli.json("flags", "set", "agent-tools", "--enabled")
    assert created["name"] == f"{name}/flags/agent-tools" and created["state"] == "STATE_ENABLED"
    assert cli.json("flags", "set", "agent-tools", "--disabled")["state"] == "STATE_DISABLED"
    got = cli.json("flags", "get", "agent-tools")
    assert got["state"] == "STATE_DISABLED" and got["defaultVariant"] == "on"
    table = cli("flags", "list")
    assert table.returncode == 0 and "agent-tools" in table.stdout and "DISABLED" in table.stdout
    assert cli("flags", "get", "nothing").returncode == 4


async def test_workflows_list_get_run_and_usage(stack: Stack, cli: Cli, tenant) -> None:
    name, secret = tenant
    assert cli("agents", "create", "planner", "--instructions", BRIEF).returncode == 0
    async with Client(gateway(stack), api_key=secret) as client:
        await client.workflows.create_workflow(
            workflow.CreateWorkflowRequest(
                parent=name,
                workflow_id="greet",
                workflow=workflow.Workflow(
                    display_name="Greet",
                    steps=[
                        workflow.WorkflowStep(
                            id="hello", agent_run=workflow.WorkflowAgentRun(agent=f"{name}/agents/planner")
                        )
                    ],
                ),
            )
        )
    assert [w["name"] for w in cli.json("workflows", "list")["workflows"]] == [f"{name}/workflows/greet"]
    assert "hello" in cli("workflows", "get", "greet").stdout
    ended = cli.json("workflows", "run", "greet", "Greet the warehouse team.")
    assert ended["state"] == "RUN_STATE_SUCCEEDED", ended
    assert cli("workflows", "get", "nothing").returncode == 4
    meters = {m["meter"]: m for m in cli.json("usage")["meters"]}
    assert meters["agent_runs"]["quantity"] >= 1, meters
    table = cli("usage")
    assert table.returncode == 0 and "agent_runs" in table.stdout
