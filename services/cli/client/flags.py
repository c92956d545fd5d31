"""``orchestrall flags list|get|set``: the tenant's feature flags."""

from __future__ import annotations

import typer

from orchestrall.sdk import NotFound, flag
from orchestrall.sdk.proto.google.protobuf import FieldMask, Value
from services.cli.client.common import OUTPUT, Output, client_of, enum_name, logged_in, run, show, show_list

flags_app = typer.Typer(help="Feature flags of the logged-in tenant.", no_args_is_help=True)


def _value(value: Value) -> str:
    return value.to_json()


def _rows(found: flag.Flag) -> list[tuple[str, str]]:
    variants = ", ".join(f"{k}={_value(v)}" for k, v in sorted(found.variants.items()))
    return [
        ("name", found.name),
        ("state", enum_name(found.state)),
        ("default variant", found.default_variant),
        ("variants", variants),
        ("revision", found.revision_id),
    ]


@flags_app.command("list")
def list_flags(
    page_size: int = typer.Option(100, help="At most this many."), output: Output = OUTPUT
) -> None:
    """List the tenant's flags."""
    login = logged_in(output)

    async def call() -> flag.ListFlagsResponse:
        async with client_of(login) as client:
            return await client.flags.list_flags(
                flag.ListFlagsRequest(parent=login.tenant, page_size=page_size)
            )

    listed = run(output, call)
    rows = [(f.name.rsplit("/", 1)[-1], enum_name(f.state), f.default_variant) for f in listed.flags]
    show_list(output, listed, ("flag", "state", "default variant"), rows, title=f"{login.tenant}: flags")


@flags_app.command("get")
def get_flag(flag_id: str = typer.Argument(..., help="The flag's key."), output: Output = OUTPUT) -> None:
    """Show one flag."""
    login = logged_in(output)

    async def call() -> flag.Flag:
        async with client_of(login) as client:
            return await client.flags.get_flag(flag.GetFlagRequest(name=f"{login.tenant}/flags/{flag_id}"))

    found = run(output, call)
    show(output, found, _rows(found), title=found.name)


@flags_app.command("set")
def set_flag(
    flag_id: str = typer.Argument(..., help="The flag's key."),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled", help="Turn it on or off."),
    default_variant: str | None = typer.Option(None, help="The variant evaluations return by default."),
    output: Output = OUTPUT,
) -> None:
    """Change a flag; a flag that does not exist yet is created as a boolean one (variants on, off)."""
    login = logged_in(output)
    name = f"{login.tenant}/flags/{flag_id}"
    state = None if enabled is None else flag.FlagState.ENABLED if enabled else flag.FlagState.DISABLED

    async def call() -> flag.Flag:
        async with client_of(login) as client:
            try:
                await client.flags.get_flag(flag.GetFlagRequest(name=name))
            except NotFound:
                return await client.flags.create_flag(
                    flag.CreateFlagRequest(
                        parent=login.tenant,
                        flag_id=flag_id,
                        request_id=f"cli-set-{flag_id}",
                        flag=flag.Flag(
                            state=state or flag.FlagState.ENABLED,
                            variants={"on": Value(bool_value=True), "off": Value(bool_value=False)},
                            default_variant=default_variant or "on",
                        ),
                    )
                )
            paths = [p for p, v in (("state", state), ("default_variant", default_variant)) if v is not None]
            return await client.flags.update_flag(
                flag.UpdateFlagRequest(
                    flag=flag.Flag(
                        name=name,
                        state=state or flag.FlagState.UNSPECIFIED,
                        default_variant=default_variant or "",
                    ),
                    update_mask=FieldMask(paths=paths),
                )
            )

    changed = run(output, call)
    show(output, changed, _rows(changed), title=changed.name)
