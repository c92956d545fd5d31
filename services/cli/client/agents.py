"""``orchestrall agents list|create|get`` and ``orchestrall run AGENT INPUT [--stream]``."""

from __future__ import annotations

import datetime as dt

import typer

from orchestrall.sdk import agent
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

#: How long one WaitRun call waits at the service before answering with the run as it is.
WAIT_STEP = dt.timedelta(seconds=30)
agents_app = typer.Typer(help="Agents of the logged-in tenant.", no_args_is_help=True)


def _rows(found: agent.Agent) -> list[tuple[str, str]]:
    return [
        ("name", found.name),
        ("display name", found.display_name),
        ("model", found.model),
        ("tools", ", ".join(found.tools)),
        ("tool choice", enum_name(found.tool_choice)),
        ("revision", found.revision_id),
        ("instructions", found.instructions),
    ]


@agents_app.command("list")
def list_agents(
    page_size: int = typer.Option(100, help="At most this many."), output: Output = OUTPUT
) -> None:
    """List the tenant's agents."""
    login = logged_in(output)

    async def call() -> agent.ListAgentsResponse:
        async with client_of(login) as client:
            return await client.agents.list_agents(
                agent.ListAgentsRequest(parent=login.tenant, page_size=page_size)
            )

    listed = run(output, call)
    rows = [(a.name.rsplit("/", 1)[-1], a.display_name, a.model, ", ".join(a.tools)) for a in listed.agents]
    show_list(
        output, listed, ("agent", "display name", "model", "tools"), rows, title=f"{login.tenant}: agents"
    )


@agents_app.command("get")
def get_agent(agent_id: str = typer.Argument(..., help="The agent's ID."), output: Output = OUTPUT) -> None:
    """Show one agent."""
    login = logged_in(output)

    async def call() -> agent.Agent:
        async with client_of(login) as client:
            return await client.agents.get_agent(
                agent.GetAgentRequest(name=f"{login.tenant}/agents/{agent_id}")
            )

    found = run(output, call)
    show(output, found, _rows(found), title=found.name)


@agents_app.command("create")
def create_agent(
    agent_id: str = typer.Argument(..., help="The new agent's ID (a-z, 0-9, -)."),
    instructions: str = typer.Option("", help="The system prompt (empty with --template)."),
    display_name: str = typer.Option("", help="A name for people; the ID when empty."),
    tool: list[str] = typer.Option([], help="A tool it may call, e.g. tools/route_distance (repeatable)."),
    template: str = typer.Option(
        "", help="Start from a template, e.g. agentTemplates/logistics-route-planner."
    ),
    output: Output = OUTPUT,
) -> None:
    """Create an agent (retried safely: the request carries a request ID)."""
    login = logged_in(output)
    body = agent.Agent(
        display_name=display_name or agent_id, instructions=instructions, tools=tool, template=template
    )

    async def call() -> agent.Agent:
        async with client_of(login) as client:
            return await client.agents.create_agent(
                agent.CreateAgentRequest(
                    parent=login.tenant, agent_id=agent_id, agent=body, request_id=f"cli-create-{agent_id}"
                )
            )

    created = run(output, call)
    show(output, created, _rows(created), title=f"created {created.name}")


def run_agent(
    agent_id: str = typer.Argument(..., help="The agent's ID."),
    text: str = typer.Argument(..., metavar="INPUT", help="What to ask it."),
    stream: bool = typer.Option(False, "--stream", help="Print the reply as it is generated."),
    timeout: float = typer.Option(600, help="Give up after this many seconds."),
    output: Output = OUTPUT,
) -> None:
    """Run an agent on INPUT; prints its reply (exit code 6 when the run does not succeed)."""
    login = logged_in(output)
    parent = f"{login.tenant}/agents/{agent_id}"

    async def call() -> agent.Run:
        async with client_of(login, stream_timeout=timeout) as client:
            started = await client.agents.create_run(
                agent.CreateRunRequest(parent=parent, run=agent.Run(input=text))
            )
            if not stream:
                ended = started
                with console.status(f"{started.name} is running ...", spinner="dots"):
                    while (
                        ended.state == agent.RunState.RUNNING
                    ):  # WaitRun answers at the latest after its timeout
                        ended = await client.agents.wait_run(
                            agent.WaitRunRequest(name=started.name, timeout=WAIT_STEP), timeout=timeout
                        )
                return ended
            ended = started
            async for event in client.agents.stream_run_events(
                agent.StreamRunEventsRequest(name=started.name)
            ):
                if event.text_delta and output is Output.TABLE:
                    console.print(event.text_delta.text, end="", markup=False, soft_wrap=True)
                elif event.tool_call_finished and output is Output.TABLE:
                    call = event.tool_call_finished
                    console.print(f"\n[dim]tool {call.tool}({call.arguments}) -> {call.result}[/]")
                elif event.run_finished:
                    ended = event.run_finished
            if output is Output.TABLE:
                console.print()
            return ended

    ended = run(output, call)
    if output is Output.JSON:
        print(ended.to_json(indent=2))
    elif not stream:
        console.print(ended.output, markup=False)
    if ended.state != agent.RunState.SUCCEEDED:
        message = ended.error.message if ended.error else ""
        fail(f"{ended.name} ended {enum_name(ended.state)} {message}".strip(), ExitCode.RUN_FAILED, output)
