"""``bookingguard db``: migrations and the database-side guarantees."""

from __future__ import annotations

from typing import Annotated

import typer

from bookingguard.cli.state import console, fail, print_json, run_cli, state_of

__all__ = ["app"]

app = typer.Typer(
    help="Schema migrations and database-side guarantees.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
triggers_app = typer.Typer(
    help="Switch the consistency triggers for a staged roll-out.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(triggers_app, name="triggers")

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from bookingguard.db import migrate

    state = state_of(ctx)
    run_cli(migrate.upgrade, state.engine, revision)
    console().print(
        f"database {state.settings.masked_database_url} at revision "
        f"{migrate.current_revision(state.engine) or 'base'}",
        highlight=False,
    )


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision ('base' removes everything).")],
) -> None:
    """Migrate the database down to REVISION."""
    from bookingguard.db import migrate

    state = state_of(ctx)
    run_cli(migrate.downgrade, state.engine, revision)
    console().print(
        f"database at revision {migrate.current_revision(state.engine) or 'base'}", highlight=False
    )


@app.command()
def current(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the current and head revisions and the schema status."""
    from bookingguard.db import migrate

    state = state_of(ctx)
    current_rev = migrate.current_revision(state.engine)
    head = migrate.head_revision(state.engine)
    status = "up to date" if current_rev == head else "behind: run 'bookingguard db upgrade'"
    if as_json:
        print_json(
            {
                "database": state.settings.masked_database_url,
                "dialect": state.engine.dialect.name,
                "current": current_rev,
                "head": head,
                "up_to_date": current_rev == head,
            }
        )
        return
    console().print(f"database: {state.settings.masked_database_url}", highlight=False)
    console().print(f"current revision: {current_rev or 'base'}   head: {head}   ({status})")


@triggers_app.command("status")
def triggers_status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the guarantee triggers and whether each is enabled."""
    from bookingguard.db import ddl

    state = state_of(ctx)
    with state.engine.connect() as connection:
        statuses = ddl.trigger_status(connection)
    if as_json:
        print_json([status.__dict__ for status in statuses])
        return
    from rich.table import Table

    table = Table("trigger", "table", "guarantee", "enabled")
    for status in statuses:
        table.add_row(status.name, status.table, status.group, "yes" if status.enabled else "no")
    console().print(table)


def _switch(ctx: typer.Context, names: list[str] | None, *, enabled: bool) -> None:
    from bookingguard.db import ddl

    state = state_of(ctx)
    try:
        with state.engine.begin() as connection:
            changed = ddl.set_triggers_enabled(connection, enabled=enabled, names=names or ())
    except ValueError as exc:
        fail(str(exc), 2)
    word = "enabled" if enabled else "disabled"
    console().print(f"{word}: {', '.join(changed)}")


NamesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Trigger names or guarantee groups (default: all)."),
]


@triggers_app.command("enable")
def triggers_enable(ctx: typer.Context, names: NamesArg = None) -> None:
    """Enable the named triggers or groups (all by default)."""
    _switch(ctx, names, enabled=True)


@triggers_app.command("disable")
def triggers_disable(ctx: typer.Context, names: NamesArg = None) -> None:
    """Disable the named triggers or groups (all by default)."""
    _switch(ctx, names, enabled=False)
