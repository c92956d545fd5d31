"""The five services in this process, on one event loop (tests and benchmarks).

``orchestrall up`` runs each service as a process of its own
(:mod:`services.cli.stack`); running them in-process instead gives a caller
their objects (databases, guards) to inspect, with the same wiring: each
service's own ``build`` and the kit's ``start``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from services.agent.server import AgentSettings
from services.auth.server import AuthSettings
from services.cli.stack import StackConfig
from services.kit import migrate
from services.kit.config import SERVICES
from services.kit.server import RunningServer, start


async def start_services(
    config: StackConfig, tls_dir: Path, model_url: str, **overrides: Any
) -> dict[str, RunningServer]:
    """Migrates and starts the five services in this event loop, auth first.

    Args:
        config: Ports, folders and database of the stack.
        tls_dir: Where the CA and workload certificates are.
        model_url: The OpenAI-compatible endpoint the agent service calls.
        **overrides: Settings every service gets instead of the config's (for example
            ``audit_relay_interval_seconds``).

    Returns:
        The running servers by service name; stop them in reverse order (auth last).
    """
    servers: dict[str, RunningServer] = {}
    for name in SERVICES:
        settings = config.settings(name).model_copy(update={"tls_dir": tls_dir, **overrides})
        migrate.upgrade(settings, name)
        if name == "agent":
            settings = AgentSettings(**settings.model_dump(), openai_base_url=model_url)
        if name == "auth":
            settings = AuthSettings(**settings.model_dump())
        build = importlib.import_module(f"services.{name}.server").build
        servers[name] = await start(*(await build(settings)))
    return servers
