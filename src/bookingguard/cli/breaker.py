"""``bookingguard breaker``: list, show, reset and force open circuit breakers.

The breaker is built from the settings, over the same store chain the service
uses: Redis when configured, else the SQL store over the configured database, so
``breaker open`` here is seen by every process sharing that database or Redis.
A circuit is known once its store has a record of it (the API's 404 otherwise):
``show`` and ``reset`` refuse an unknown key, ``open`` creates it open. An open
circuit whose cooldown has run out reads "open, next call probes", as in the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from bookingguard.cli.state import console, fail, print_json, state_of
from bookingguard.clock import utc_now

if TYPE_CHECKING:
    from bookingguard.resilience import CircuitBreaker, CircuitStatistics

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    help="Inspect and control circuit breakers.", no_args_is_help=True, rich_markup_mode=None
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KeyArg = Annotated[
    str, typer.Argument(metavar="KEY", help="Circuit key, e.g. appointment_booking:event_type:42.")
]


def _with_breaker(ctx: typer.Context, action: Callable[[CircuitBreaker], Awaitable[T]]) -> T:
    import asyncio

    from bookingguard.bootstrap import circuit_breaker_in_use

    state = state_of(ctx)

    async def run() -> T:
        async with circuit_breaker_in_use(state.settings, state.engine) as breaker:
            return await action(breaker)

    return asyncio.run(run())


def _known(
    key: str, action: Callable[[CircuitBreaker], Awaitable[T]]
) -> Callable[[CircuitBreaker], Awaitable[T | None]]:
    """``action`` on the circuit ``key`` if its store knows it, else ``None``."""

    async def run(breaker: CircuitBreaker) -> T | None:
        if key not in {circuit.circuit_key for circuit in await breaker.list_circuits()}:
            return None
        return await action(breaker)

    return run


def _unknown(key: str) -> NoReturn:
    fail(f"no circuit {key!r} (see 'bookingguard breaker list')", 1)


def _when(value: object) -> str:
    return "-" if value is None else str(value)


def _as_dict(stats: CircuitStatistics) -> dict[str, object]:
    """The circuit as the API gives it: with its status now, ``open_until`` only if ahead."""
    status = stats.status_at(utc_now())
    until = status.open_until
    return {
        **stats.as_dict(),
        "status": status.label,
        "awaiting_probe": status.awaiting_probe,
        "open_until": None if until is None else until.isoformat(),
    }


_COLUMNS = (
    "circuit",
    "state",
    "failures",
    "successes",
    "rejected",
    "opened at",
    "open until",
    "store",
)


def _table(circuits: list[dict[str, object]]) -> list[str]:
    """Aligned plain-text lines, header first.

    Never wrapped or cut to the terminal's width (as a Rich table would be): a key
    is always shown whole, so two circuits cannot read the same.
    """
    rows = [_COLUMNS, *(_cells(circuit) for circuit in circuits)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _cells(circuit: dict[str, object]) -> tuple[str, ...]:
    return tuple(
        _when(circuit[name])
        for name in (
            "circuit_key",
            "status",
            "failure_count",
            "success_count",
            "not_permitted_count",
            "opened_at",
            "open_until",
            "store",
        )
    )


def _show(stats: CircuitStatistics, as_json: bool) -> None:
    circuit = _as_dict(stats)
    if as_json:
        print_json(circuit)
        return
    for name, value in circuit.items():
        console().print(f"{name:>20}: {_when(value)}", highlight=False, markup=False, emoji=False)


@app.command("list")
def list_circuits(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List every known circuit with its state and counts."""
    circuits = [_as_dict(stats) for stats in _with_breaker(ctx, lambda b: b.list_circuits())]
    if as_json:
        print_json(circuits)
        return
    if not circuits:
        typer.echo("no circuits recorded yet")
        return
    for line in _table(circuits):
        typer.echo(line)


@app.command()
def show(ctx: typer.Context, key: KeyArg, as_json: JsonFlag = False) -> None:
    """Show one circuit: state, counts, rates and times (exit 1 if it is unknown)."""
    stats = _with_breaker(ctx, _known(key, lambda breaker: breaker.statistics(key)))
    if stats is None:
        _unknown(key)
    _show(stats, as_json)


@app.command()
def reset(ctx: typer.Context, key: KeyArg, as_json: JsonFlag = False) -> None:
    """Close the circuit and clear its counts, also ending a forced open (exit 1 if unknown)."""
    stats = _with_breaker(ctx, _known(key, lambda breaker: breaker.reset(key)))
    if stats is None:
        _unknown(key)
    _show(stats, as_json)


@app.command("open")
def force_open(ctx: typer.Context, key: KeyArg, as_json: JsonFlag = False) -> None:
    """Force the circuit open, creating it if need be: every call is rejected until reset."""
    _show(_with_breaker(ctx, lambda breaker: breaker.force_open(key)), as_json)
