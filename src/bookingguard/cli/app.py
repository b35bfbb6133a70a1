"""The root Typer app: global options and the command groups.

Help is click's plain format (``rich_markup_mode=None`` on every Typer app): Typer's
Rich panels print a ``<bool>`` type after every flag, ``--help`` included, and
loading Rich for them makes ``--help`` slower. The command modules import their
heavy dependencies inside the commands, so building this app stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bookingguard.cli import breaker, db, demo, monitor, review, serve, token
from bookingguard.cli.state import CliState, FindingsCommand

__all__ = ["app", "main"]

app = typer.Typer(
    name="bookingguard",
    help="Keeps appointment booking by voice agents consistent: no phantom bookings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(db.app, name="db")
app.add_typer(breaker.app, name="breaker")
app.add_typer(token.app, name="token")
app.add_typer(review.app, name="review")
app.command(name="demo")(demo.demo_command)
app.command(cls=FindingsCommand)(monitor.check)
app.command()(monitor.report)
app.command(cls=FindingsCommand)(monitor.reconcile)
app.command()(monitor.worker)
app.command(name="serve")(serve.serve)
app.add_typer(monitor.alerts_app, name="alerts")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"bookingguard {version('bookingguard')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="BOOKINGGUARD_CONFIG",
            metavar="FILE",
            help="TOML configuration file (the environment still wins).",
        ),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=False,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    state = CliState(config_file=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Console-script entry point."""
    app()
