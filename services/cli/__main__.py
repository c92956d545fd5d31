"""``orchestrall``: run the mesh here, the demo against it; drive a stack as a client (on the SDK).

The client commands (``login``, ``agents``, ``run``, ``workflows``, ``flags``, ``usage``) are in
:mod:`services.cli.client`; their exit codes are listed in :mod:`services.cli.client.common`.
The local runtime (:mod:`services.cli.stack`: Alembic, SQLAlchemy, the Envoy renderer) is imported
by ``up`` and ``demo`` alone, so a client command starts without it (1.1 s of CPU instead of 1.9 s).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
import typer
from rich.console import Console
from rich.table import Table

from orchestrall.auth.v1.auth_service_pb2 import RotateSigningKeyRequest
from orchestrall.auth.v1.auth_service_pb2_grpc import AuthServiceStub
from services.cli.billing import invoices_app, plans_app
from services.cli.client.agents import agents_app, run_agent
from services.cli.client.flags import flags_app
from services.cli.client.login import login
from services.cli.client.usage import usage
from services.cli.client.workflows import workflows_app
from services.kit.config import SERVICES
from services.kit.mtls import CLI_IDENTITY, TlsFiles, channel_credentials

if TYPE_CHECKING:
    from services.cli.stack import StackConfig

app = typer.Typer(
    help="Orchestrall: AI agents and workflows for many tenants, as a gRPC mesh.", no_args_is_help=True
)
console = Console(highlight=False)


def _config(
    state_dir: Path,
    http_port: int,
    service_port_base: int,
    tls: bool = False,
    traces: Path | None = None,
    plan_rate_limit: bool = False,
) -> StackConfig:
    from services.cli.stack import StackConfig

    return StackConfig(
        state_dir=state_dir,
        http_port=http_port,
        edge_tls=tls,
        traces_file=traces,
        plan_rate_limit=plan_rate_limit,
        admin_port=http_port + 1821,
        stats_port=http_port + 1822,
        mcp_port=http_port + 1,
        oauth_port=http_port + 2,
        service_ports={name: service_port_base + i for i, name in enumerate(SERVICES)},
        database_url=os.environ.get("DATABASE_URL"),
        openai_base_url=os.environ.get("OPENAI_BASE_URL"),
    )


@app.command()
def up(
    state_dir: Path = typer.Option(Path(".state"), help="SQLite files, certificates, logs."),
    http_port: int = typer.Option(
        8080,
        help="Gateway port (REST and gRPC); Envoy admin is this + 1821, Envoy's Prometheus stats + 1822, "
        "the agent's MCP server + 1, auth's OAuth token endpoint (form-encoded) + 2.",
    ),
    service_port_base: int = typer.Option(
        50051, help="auth listens here, agent, workflow, flag, billing after it."
    ),
    tls: bool = typer.Option(
        False,
        help="Serve the gateway over TLS, its certificate from the local CA (<state-dir>/tls/ca.pem).",
    ),
    traces: Path | None = typer.Option(
        None,
        help="Write every span (gateway and services) to this file, one OTLP JSON line per export; "
        "the gateway samples ORCHESTRALL_GATEWAY_TRACE_SAMPLING percent of requests (default 10).",
    ),
    plan_rate_limit: bool = typer.Option(
        False,
        help="Hold each tenant to its plan's request rate over every gateway (billing's rate limit "
        "service; counted in Redis with ORCHESTRALL_REDIS_URL, else in billing's memory).",
    ),
) -> None:
    """Start the model server, the five services and Envoy; Ctrl-C or SIGTERM stops them all."""
    from services.cli.stack import Stack, telemetry_summary

    config = _config(state_dir, http_port, service_port_base, tls, traces, plan_rate_limit)
    stack = Stack(config, log=console.print)
    console.print("Starting Orchestrall ...")
    stack.start()
    t, url = stack.timings, stack.config.gateway_url
    console.print(
        f"[bold green]Orchestrall is up[/] in {t['total']:.1f}s (gRPC SERVING at {t['services']:.1f}s)\n"
        f"  REST  {url}   e.g. curl {url}/.well-known/openid-configuration\n"
        f"  gRPC  127.0.0.1:{stack.config.http_port} (through Envoy, same JWT)\n"
        f"  MCP   {url}/mcp (the built-in tools for MCP clients, streamable HTTP, same JWT)\n"
        f"  logs  {stack.config.state_dir / 'logs'} (one JSON line per RPC)\n" + telemetry_summary(stack)
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    console.print("Stopping ...")
    stack.stop()


@app.command()
def demo(
    url: str = typer.Option("http://127.0.0.1:8080", help="Gateway of a running stack."),
    state_dir: Path = typer.Option(
        Path(".state/demo"), help="Where a stack started by the demo keeps its state."
    ),
) -> None:
    """Run the main job through REST; starts (and then stops) a stack when none answers at --url."""
    from services.cli.demo import DemoFailed, run_demo
    from services.cli.stack import Stack, StackConfig

    try:
        running = httpx.get(f"{url}/.well-known/openid-configuration", timeout=2).status_code == 200
    except httpx.HTTPError:
        running = False
    stack = None
    if not running:
        console.print(f"No stack at {url}; starting one (state in {state_dir}) ...")
        stack = Stack(
            StackConfig.ephemeral(state_dir, openai_base_url=os.environ.get("OPENAI_BASE_URL")), console.print
        )
        stack.start()
        url = stack.config.gateway_url
    try:
        result = run_demo(url, echo=console.print)
    except (DemoFailed, httpx.HTTPError) as error:
        console.print(f"[bold red]demo failed:[/] {error}")
        raise typer.Exit(1) from None
    finally:
        if stack is not None:
            stack.stop()
    console.print(f"\n[bold green]Demo complete[/] for tenants/{result.tenant}.")


@app.command("rotate-keys")
def rotate_keys(
    state_dir: Path = typer.Option(Path(".state"), help="Where `up` keeps the local CA and certificates."),
    auth_address: str = typer.Option("127.0.0.1:50051", help="The auth service's gRPC address."),
) -> None:
    """Rotate the token signing key: the new key is published now and signs after the publish delay."""
    credentials = channel_credentials(TlsFiles.of(state_dir / "tls", CLI_IDENTITY))
    with grpc.secure_channel(
        auth_address, credentials, options=[("grpc.ssl_target_name_override", "auth")]
    ) as channel:
        try:
            rotated = AuthServiceStub(channel).RotateSigningKey(RotateSigningKeyRequest(), timeout=10)
        except grpc.RpcError as error:
            console.print(f"[bold red]rotation failed:[/] {error.code().name} {error.details()}")
            raise typer.Exit(1) from None
    activate = rotated.activate_time.ToDatetime().isoformat(timespec="seconds")
    console.print(
        f"New key {rotated.kid} is published; it signs from {activate}Z, replacing {rotated.previous_kid}."
    )


workflow_app = typer.Typer(help="Workflows of a running stack, through its gateway.", no_args_is_help=True)
app.add_typer(workflow_app, name="workflow")
app.add_typer(plans_app, name="plans")
app.add_typer(invoices_app, name="invoices")
app.command("login")(login)
app.add_typer(agents_app, name="agents")
app.command("run")(run_agent)
app.add_typer(workflows_app, name="workflows")
app.add_typer(flags_app, name="flags")
app.command("usage")(usage)


@workflow_app.command("show")
def workflow_show(
    run: str = typer.Argument(..., help="The run, tenants/{t}/workflows/{w}/runs/{r}."),
    url: str = typer.Option("http://127.0.0.1:8080", help="Gateway of a running stack."),
    token: str = typer.Option(..., envvar="ORCHESTRALL_TOKEN", help="A bearer token of the run's tenant."),
) -> None:
    """Print a run's steps, its graph (Mermaid) and its history."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        answers = [http.get(f"/v1/{run}{suffix}") for suffix in ("", ":graph", "/events")]
    for answer in answers:
        if not answer.is_success:
            console.print(f"[bold red]{answer.request.url.path}:[/] {answer.status_code} {answer.text[:300]}")
            raise typer.Exit(1)
    found, graph, events = (answer.json() for answer in answers)
    table = Table("step", "state", "attempts", "error", title=f"{run}: {found['state']}")
    for step in found.get("steps", []):
        error = step.get("error", {}).get("message", "")
        table.add_row(
            step["stepId"], step["state"].removeprefix("RUN_STATE_"), str(step.get("attempts", 0)), error
        )
    console.print(table)
    console.print(graph["mermaid"], markup=False)
    for event in events.get("events", []):
        kind = event["type"].removeprefix("dev.orchestrall.workflow.")
        console.print(
            f"{event['sequence']:>4}  {event['time']}  {kind:<24} {event.get('stepId', '')}", markup=False
        )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
