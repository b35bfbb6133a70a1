"""The root Typer app: global options and the command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bookingguard.cli import breaker, db, demo, monitor, review, serve, token
from bookingguard.cli.state import CliState

__all__ = ["app", "main"]

app = typer.Typer(
    name="bookingguard",
    help="Keeps appointment booking by voice agents consistent: no phantom bookings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(breaker.app, name="breaker")
app.add_typer(token.app, name="token")
app.add_typer(review.app, name="review")
app.command(name="demo")(demo.demo_command)
app.command()(monitor.check)
app.command()(monitor.report)
app.command()(monitor.reconcile)
app.command()(monitor.worker)
app.command(name="serve")(serve.serve)
app.add_typer(monitor.alerts_app, name="alerts")


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="BOOKINGGUARD_CONFIG",
            help="TOML configuration file (the environment still wins).",
        ),
    ] = None,
) -> None:
    state = CliState(config_file=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Console-script entry point."""
    app()
