"""Two workflow service replicas on one PostgreSQL database share the runs, and no step runs twice.

The session stack's workflow service (DBOS executor ``local``) gets a second
process beside it (executor ``replica-2``) on the same database. Runs enter
through the gateway, which knows only the first; both replicas take runs from
the engine's DBOS queue, so each run executes on exactly one of them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from services.cli.stack import ROOT, Stack, free_port
from services.kit.db import schema_name
from services.workflow import engine
from tests.mesh.conftest import auth, stored_rows
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh
RUNS = 24


@pytest.fixture
def second_replica(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    port = free_port()
    env = stack.config.environment("workflow") | {
        "ORCHESTRALL_LISTEN": f"127.0.0.1:{port}",
        "ORCHESTRALL_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "ORCHESTRALL_EXECUTOR_ID": "replica-2",
    }
    log = tmp_path_factory.mktemp("replica") / "workflow-2.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.workflow"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the second replica did not start"
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


def test_two_replicas_share_the_runs_and_run_each_step_once(
    stack: Stack, http: httpx.Client, second_replica: None
) -> None:
    owner = sign_up(http, "replicas")
    t, headers = f"tenants/{owner.tenant}", auth(owner.token)
    steps = [
        {"id": "pause", "wait": {"duration": "0.5s"}},
        {"id": "tell", "dependsOn": ["pause"], "notification": {"channel": "ops", "messageTemplate": "done"}},
    ]
    created = http.post(
        f"/v1/{t}/workflows", params={"workflowId": "shared"}, json={"steps": steps}, headers=headers
    )
    assert created.status_code == 200, created.text
    names = []
    for i in range(RUNS):
        started = http.post(f"/v1/{t}/workflows/shared/runs", json={"input": f"run {i}"}, headers=headers)
        assert started.status_code == 200, started.text
        names.append(started.json()["name"])
    deadline = time.monotonic() + 60
    for name in names:
        while (run := http.get(f"/v1/{name}", headers=headers).json())["state"] != "RUN_STATE_SUCCEEDED":
            assert run["state"] in ("RUN_STATE_PENDING", "RUN_STATE_RUNNING"), run
            assert time.monotonic() < deadline, f"{name} did not finish"
            time.sleep(0.1)
        events = http.get(f"/v1/{name}/events", headers=headers).json()["events"]
        succeeded = [e["stepId"] for e in events if e["type"].endswith(".step.succeeded")]
        assert sorted(succeeded) == ["pause", "tell"], events
    dbos = engine.dbos_schema(schema_name(stack.config.settings("workflow"), "workflow"))
    ids = [name.rsplit("/", 1)[-1] for name in names]
    executors: dict[str, str] = dict(
        stored_rows(
            stack,
            "workflow",
            f'SELECT workflow_uuid, executor_id FROM "{dbos}".workflow_status'
            " WHERE name = 'orchestrall.workflow.run' AND workflow_uuid = ANY(:ids)",
            ids=ids,  # type: ignore[arg-type]
        )
    )
    assert sorted(executors) == sorted(ids)
    counts = {executor: list(executors.values()).count(executor) for executor in set(executors.values())}
    print(f"runs per replica: {counts}")
    assert set(counts) == {"local", "replica-2"}, counts
