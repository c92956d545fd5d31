"""``orchestrall workflows list|get|run``: the tenant's workflows, and runs of them."""

from __future__ import annotations

import asyncio
import secrets
import time

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from orchestrall.sdk import workflow
from services.cli.client.common import (
    OUTPUT,
    ExitCode,
    Output,
    client_of,
    console,
    enum_name,
    fail,
    logged_in,
    run,
    show,
    show_list,
)

workflows_app = typer.Typer(help="Workflows of the logged-in tenant, and their runs.", no_args_is_help=True)
#: Run states after which nothing changes any more.
_ACTIVE = (workflow.RunState.PENDING, workflow.RunState.RUNNING)


@workflows_app.command("list")
def list_workflows(
    page_size: int = typer.Option(100, help="At most this many."), output: Output = OUTPUT
) -> None:
    """List the tenant's workflows."""
    login = logged_in(output)

    async def call() -> workflow.ListWorkflowsResponse:
        async with client_of(login) as client:
            return await client.workflows.list_workflows(
                workflow.ListWorkflowsRequest(parent=login.tenant, page_size=page_size)
            )

    listed = run(output, call)
    rows = [
        (w.name.rsplit("/", 1)[-1], w.display_name, str(len(w.steps)), w.revision_id)
        for w in listed.workflows
    ]
    show_list(
        output,
        listed,
        ("workflow", "display name", "steps", "revision"),
        rows,
        title=f"{login.tenant}: workflows",
    )


@workflows_app.command("get")
def get_workflow(
    workflow_id: str = typer.Argument(..., help="The workflow's ID."), output: Output = OUTPUT
) -> None:
    """Show one workflow and its steps."""
    login = logged_in(output)

    async def call() -> workflow.Workflow:
        async with client_of(login) as client:
            return await client.workflows.get_workflow(
                workflow.GetWorkflowRequest(name=f"{login.tenant}/workflows/{workflow_id}")
            )

    found = run(output, call)
    steps = ", ".join(f"{s.id}<-{'+'.join(s.depends_on)}" if s.depends_on else s.id for s in found.steps)
    show(
        output,
        found,
        [
            ("name", found.name),
            ("display name", found.display_name),
            ("steps", steps),
            ("revision", found.revision_id),
        ],
        title=found.name,
    )


@workflows_app.command("run")
def run_workflow(
    workflow_id: str = typer.Argument(..., help="The workflow's ID."),
    text: str = typer.Argument("", metavar="INPUT", help="The run's input."),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Follow the run until it ends (progress per step)."
    ),
    timeout: float = typer.Option(900, help="Stop following after this many seconds."),
    output: Output = OUTPUT,
) -> None:
    """Start a run of a workflow and follow it; exit code 6 when it does not succeed."""
    login = logged_in(output)
    request = workflow.CreateWorkflowRunRequest(
        parent=f"{login.tenant}/workflows/{workflow_id}",
        workflow_run=workflow.WorkflowRun(input=text),
        request_id=f"cli-{secrets.token_hex(8)}",  # a retried start is one run
    )

    async def call() -> workflow.WorkflowRun:
        async with client_of(login) as client:
            current = await client.workflows.create_workflow_run(request)
            if not wait:
                return current
            deadline = time.monotonic() + timeout
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                disable=output is Output.JSON,
                transient=True,
            ) as progress:
                task = progress.add_task(current.name)
                while current.state in _ACTIVE and time.monotonic() < deadline:
                    done = sum(1 for s in current.steps if s.state not in _ACTIVE)
                    states = " ".join(f"{s.step_id}:{enum_name(s.state)}" for s in current.steps)
                    progress.update(
                        task, description=f"{enum_name(current.state)} {done} steps done  {states}"
                    )
                    await asyncio.sleep(0.5)
                    current = await client.workflows.get_workflow_run(
                        workflow.GetWorkflowRunRequest(name=current.name)
                    )
            return current

    ended = run(output, call)
    rows = [("name", ended.name), ("state", enum_name(ended.state)), ("output", ended.output)]
    rows += [(f"step {s.step_id}", enum_name(s.state)) for s in ended.steps]
    show(output, ended, rows, title=ended.name)
    if wait and ended.state != workflow.RunState.SUCCEEDED:
        message = ended.error.message if ended.error else ""
        fail(f"{ended.name} is {enum_name(ended.state)} {message}".strip(), ExitCode.RUN_FAILED, output)
