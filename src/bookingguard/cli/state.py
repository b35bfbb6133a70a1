"""What every command shares: lazily loaded settings and engine, and error-to-exit-code mapping."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy import Engine

from bookingguard.bootstrap import build_engine
from bookingguard.db.engine import check_connection
from bookingguard.errors import (
    BookingGuardError,
    ConfigurationError,
    DatabaseUnavailableError,
    MigrationError,
)
from bookingguard.settings import Settings, load_settings

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "CliState", "console", "err_console", "fail", "state_of"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


@dataclass
class CliState:
    """Built on first use, so ``--help`` and bad flags never touch configuration."""

    config_file: Path | None = None
    _settings: Settings | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            with cli_errors():
                self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def engine(self) -> Engine:
        """The engine, checked once: an unreachable database is a one-line error, exit 1."""
        if self._engine is None:
            engine = build_engine(self.settings)
            with cli_errors():
                check_connection(engine)
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def state_of(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    if not isinstance(state, CliState):
        raise RuntimeError("CLI state missing: commands run under the root app only")
    return state


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Map domain errors to exit codes: configuration 2, everything else 1. No tracebacks."""
    try:
        yield
    except ConfigurationError as exc:
        fail(exc.message, EXIT_CONFIG)
    except (DatabaseUnavailableError, MigrationError) as exc:
        fail(exc.message, EXIT_FAILURE)
    except BookingGuardError as exc:
        fail(exc.message, EXIT_FAILURE)


def run_cli(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with cli_errors():
        return function(*args, **kwargs)


def print_json(payload: Any) -> None:
    """One JSON document on stdout, nothing else."""
    import json

    sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
