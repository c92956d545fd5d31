"""What every client command shares: the stored login, output as tables or JSON, and exit codes.

Exit codes (scripts may rely on them):

====  ===========================================================================
0     success
1     the service refused the request (invalid argument, already exists, failed
      precondition, quota used up, conflict)
2     the command line is wrong (click's own code for usage errors)
3     not logged in, or the credential is refused (unauthenticated, permission denied)
4     not found
5     the server failed or could not be reached (unavailable, internal, deadline)
6     a run or workflow run ended without succeeding
====  ===========================================================================
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Iterable
from enum import IntEnum, StrEnum
from typing import Any, NoReturn, TypeVar

import betterproto2
import typer
from grpclib.const import Status
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrall.sdk import Client, OrchestrallError
from services.cli.client.config import Login, load

T = TypeVar("T")
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


class ExitCode(IntEnum):
    """The CLI's exit codes (the module docstring says when each is used)."""

    OK = 0
    REJECTED = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    SERVER = 5
    RUN_FAILED = 6


class Output(StrEnum):
    """How results are printed."""

    TABLE = "table"
    JSON = "json"


OUTPUT = typer.Option(Output.TABLE, "--output", "-o", help="table (rich) or json (one document on stdout).")

_CODES = {
    Status.UNAUTHENTICATED: ExitCode.AUTH,
    Status.PERMISSION_DENIED: ExitCode.AUTH,
    Status.NOT_FOUND: ExitCode.NOT_FOUND,
    Status.INVALID_ARGUMENT: ExitCode.REJECTED,
    Status.ALREADY_EXISTS: ExitCode.REJECTED,
    Status.FAILED_PRECONDITION: ExitCode.REJECTED,
    Status.RESOURCE_EXHAUSTED: ExitCode.REJECTED,
    Status.ABORTED: ExitCode.REJECTED,
    Status.OUT_OF_RANGE: ExitCode.REJECTED,
    Status.CANCELLED: ExitCode.REJECTED,
}


def exit_code_of(error: OrchestrallError) -> ExitCode:
    """Returns the exit code for a failed call (server-side codes not listed are :attr:`ExitCode.SERVER`)."""
    return _CODES.get(error.code, ExitCode.SERVER)


def fail(message: str, exit_code: ExitCode, output: Output = Output.TABLE, **detail: Any) -> NoReturn:
    """Prints ``message`` on stderr (a JSON object with ``--output json``) and exits with ``exit_code``."""
    if output is Output.JSON:
        document = {"error": {"message": message, "exitCode": int(exit_code), **detail}}
        print(json.dumps(document), file=sys.stderr)
    else:
        errors.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(int(exit_code))


def logged_in(output: Output) -> Login:
    """Returns the stored login, or exits with :attr:`ExitCode.AUTH` when there is none."""
    login = load()
    if login is None:
        fail("not logged in: run `orchestrall login` first", ExitCode.AUTH, output)
    return login


def client_of(login: Login, **options: Any) -> Client:
    """Returns an SDK client for the stored login (``options`` go to :class:`~orchestrall.sdk.Client`)."""
    return Client(login.address, api_key=login.api_key, ca_file=login.ca_file, **options)


def run(output: Output, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs one command's calls; a failed call exits with its code and the answer's reason.

    Returns:
        What ``call`` returned.
    """
    try:
        return asyncio.run(call())
    except OrchestrallError as error:
        detail: dict[str, Any] = {"code": error.code.name, "reason": error.reason, "domain": error.domain}
        if error.field_violations:
            detail["fieldViolations"] = [
                {"field": v.field, "description": v.description} for v in error.field_violations
            ]
        fail(str(error), exit_code_of(error), output, **detail)


def show(
    output: Output, message: betterproto2.Message, rows: Iterable[tuple[str, str]], title: str = ""
) -> None:
    """Prints one resource: its proto JSON, or a two-column table of ``rows``."""
    if output is Output.JSON:
        print(message.to_json(indent=2))
        return
    table = Table("field", "value", title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def show_list(
    output: Output,
    response: betterproto2.Message,
    columns: tuple[str, ...],
    rows: Iterable[tuple[str, ...]],
    title: str = "",
) -> None:
    """Prints a List answer: its proto JSON, or a table with ``columns``."""
    if output is Output.JSON:
        print(response.to_json(indent=2))
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def enum_name(value: Any, prefix: str = "") -> str:
    """Returns an enum's name without the redundant prefix, e.g. ``SUCCEEDED``."""
    return str(getattr(value, "name", value)).removeprefix(prefix)
