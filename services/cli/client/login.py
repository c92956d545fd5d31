"""``orchestrall login``: checks an API key at the gateway and stores it (0600) for the other commands."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import typer

from orchestrall.sdk import Client
from services.cli.client.common import OUTPUT, Output, console, run
from services.cli.client.config import Login, save


def _tenant_of(token: str) -> str:
    """Returns ``tenants/{tenant}`` from a token's ``tenant`` claim (read only; the services verify it)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"tenants/{claims['tenant']}"


def login(
    address: str = typer.Option(
        "127.0.0.1:8080",
        "--address",
        help="The gateway's gRPC address (Envoy's port), host:port or https://...",
    ),
    api_key: str = typer.Option(
        ...,
        "--api-key",
        envvar="ORCHESTRALL_API_KEY",
        prompt=True,
        hide_input=True,
        help="The API key's secret.",
    ),
    ca_file: Path | None = typer.Option(
        None, help="The CA of the gateway's certificate (a gateway over TLS)."
    ),
    output: Output = OUTPUT,
) -> None:
    """Exchange an API key for a token at the gateway and store the key (mode 0600) for later commands."""

    async def check() -> str:
        async with Client(address, api_key=api_key, ca_file=ca_file) as client:
            token = await client.token()
        assert token
        return token

    tenant = _tenant_of(run(output, check))
    path = save(
        Login(address=address, api_key=api_key, tenant=tenant, ca_file=str(ca_file) if ca_file else None)
    )
    if output is Output.JSON:
        print(json.dumps({"tenant": tenant, "address": address, "credentials": str(path)}))
    else:
        console.print(f"Logged in to [bold]{tenant}[/] at {address}; the key is in {path} (mode 0600).")
