"""``bookingguard breaker``: list, show, reset and force open circuit breakers.

The breaker is built from the settings, over the same store chain the service
uses: Redis when configured, else the SQL store over the configured database, so
``breaker open`` here is seen by every process sharing that database or Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from bookingguard.bootstrap import build_circuit_breaker, build_redis
from bookingguard.cli.state import console, print_json, state_of
from bookingguard.resilience import CircuitBreaker, CircuitStatistics

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(help="Inspect and control circuit breakers.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KeyArg = Annotated[str, typer.Argument(help="Circuit key, e.g. appointment_booking:event_type:42.")]


def _with_breaker(ctx: typer.Context, action: Callable[[CircuitBreaker], Awaitable[T]]) -> T:
    state = state_of(ctx)
    settings, engine = state.settings, state.engine

    async def run() -> T:
        redis_clients = build_redis(settings)
        breaker = build_circuit_breaker(
            settings,
            engine,
            redis_client=redis_clients.asyncio if redis_clients is not None else None,
        )
        try:
            return await action(breaker)
        finally:
            await breaker.aclose()
            if redis_clients is not None:
                await redis_clients.aclose()

    return asyncio.run(run())


def _when(value: object) -> str:
    return "-" if value is None else str(value)


def _table(circuits: list[CircuitStatistics]) -> Table:
    table = Table(
        "circuit", "state", "failures", "successes", "rejected", "opened at", "open until", "store"
    )
    for stats in circuits:
        state = f"{stats.state} (forced)" if stats.forced_open else stats.state
        cells = (
            stats.circuit_key,
            state,
            str(stats.failure_count),
            str(stats.success_count),
            str(stats.not_permitted_count),
            _when(stats.opened_at),
            _when(stats.open_until),
            stats.store,
        )
        # Text, not markup: a key such as 'x:b:1' must not turn into an emoji.
        table.add_row(*(Text(cell) for cell in cells))
    return table


def _show(stats: CircuitStatistics, as_json: bool) -> None:
    if as_json:
        print_json(stats.as_dict())
        return
    for name, value in stats.as_dict().items():
        console.print(f"{name:>20}: {_when(value)}", highlight=False, markup=False, emoji=False)


@app.command("list")
def list_circuits(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List every known circuit with its state and counts."""
    circuits = _with_breaker(ctx, lambda breaker: breaker.list_circuits())
    if as_json:
        print_json([stats.as_dict() for stats in circuits])
        return
    if not circuits:
        console.print("no circuits recorded yet")
        return
    console.print(_table(circuits))


@app.command()
def show(ctx: typer.Context, key: KeyArg, as_json: JsonFlag = False) -> None:
    """Show one circuit: state, counts, rates and times."""
    _show(_with_breaker(ctx, lambda breaker: breaker.statistics(key)), as_json)


@app.command()
def reset(ctx: typer.Context, key: KeyArg, as_json: JsonFlag = False) -> None:
    """Close the circuit and clear its counts (also ends a forced open)."""
    _show(_with_breaker(ctx, lambda breaker: breaker.reset(key)), as_json)


@app.command("open")
def force_open(ctx: typer.Context, key: KeyArg, as_json: JsonFlag = False) -> None:
    """Force the circuit open: every call is rejected until 'breaker reset'."""
    _show(_with_breaker(ctx, lambda breaker: breaker.force_open(key)), as_json)
