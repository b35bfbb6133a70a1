"""What every command shares: lazily loaded settings and engine, and error-to-exit-code mapping.

Nothing heavy is imported here at module level (no settings, SQLAlchemy or Rich),
so that ``bookingguard --help`` and a mistyped flag answer at once; the commands
import what they need when they run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from typer.core import TyperCommand

from bookingguard.errors import BookingGuardError, ConfigurationError

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine
    from typer._click.core import Context as ClickContext  # Typer's own click, vendored

    from bookingguard.settings import Settings

__all__ = [
    "EXIT_CONFIG",
    "EXIT_COULD_NOT_RUN",
    "EXIT_FAILURE",
    "CliState",
    "FindingsCommand",
    "console",
    "err_console",
    "fail",
    "state_of",
]

EXIT_FAILURE = 1
EXIT_CONFIG = 2
#: ``check`` and ``reconcile``: the run itself could not happen (their 1 and 2 are findings).
EXIT_COULD_NOT_RUN = 3

T = TypeVar("T")


@cache
def console() -> Console:
    """Rich console on stdout, made on first use."""
    from rich.console import Console

    return Console()


@cache
def err_console() -> Console:
    """Rich console on stderr, made on first use."""
    from rich.console import Console

    return Console(stderr=True)


@dataclass
class CliState:
    """Built on first use, so ``--help`` and bad flags never touch configuration.

    ``error_code``, when set, is the exit code of every error (configuration,
    database, a failed call): the findings commands set it to 3.
    """

    config_file: Path | None = None
    error_code: int | None = None
    _settings: Settings | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from bookingguard.settings import load_settings

            with cli_errors(self.error_code):
                self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def engine(self) -> Engine:
        """The engine, checked once: an unreachable database is a one-line error, exit 1."""
        if self._engine is None:
            from bookingguard.bootstrap import build_engine
            from bookingguard.db.engine import check_connection

            engine = build_engine(self.settings)
            with cli_errors(self.error_code):
                check_connection(engine)
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def state_of(ctx: ClickContext) -> CliState:
    state = ctx.find_root().obj
    if not isinstance(state, CliState):
        raise RuntimeError("CLI state missing: commands run under the root app only")
    return state


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    from rich.markup import escape

    # The message is text: brackets stay brackets and ':b:' does not become an emoji.
    err_console().print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False
    )
    raise typer.Exit(code)


@contextmanager
def cli_errors(code: int | None = None) -> Iterator[None]:
    """Map domain errors to exit codes: configuration 2, everything else 1 (or all ``code``).

    No tracebacks: the message is one line on stderr.
    """
    try:
        yield
    except ConfigurationError as exc:
        fail(exc.message, EXIT_CONFIG if code is None else code)
    except BookingGuardError as exc:
        fail(exc.message, EXIT_FAILURE if code is None else code)


def run_cli(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with cli_errors():
        return function(*args, **kwargs)


def print_json(payload: Any) -> None:
    """One JSON document on stdout, nothing else."""
    import json

    sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")


class FindingsCommand(TyperCommand):
    """A command whose exit codes 1 and 2 report findings (``check``, ``reconcile``).

    Whatever keeps it from running exits 3 instead, so that a script can tell "critical
    findings" from "could not run": a bad option or value (click's usage errors exit 2),
    and every configuration, database or service error (through ``CliState.error_code``).
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: ClickContext | None = None,
        **extra: Any,
    ) -> ClickContext:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as exc:
            exc.exit_code = EXIT_COULD_NOT_RUN
            raise

    def invoke(self, ctx: ClickContext) -> Any:
        state_of(ctx).error_code = EXIT_COULD_NOT_RUN
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:
            exc.exit_code = EXIT_COULD_NOT_RUN
            raise
