"""``bookingguard demo``: fill the configured database with realistic synthetic data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bookingguard.cli.state import console, fail, print_json, state_of

__all__ = ["demo_command"]


def demo_command(
    ctx: typer.Context,
    reset: Annotated[
        bool, typer.Option("--reset", help="Empty the data tables first (API tokens are kept).")
    ] = False,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing (exit 0) if calls already exist.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 42,
    days: Annotated[int, typer.Option("--days", min=1, max=365)] = 14,
    calls_per_day: Annotated[int, typer.Option("--calls-per-day", min=10, max=20000)] = 80,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Load demo customers, calls, appointments and a known share of each inconsistency."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from bookingguard import demo

    state = state_of(ctx)
    existing = demo.count_calls(state.engine)
    if existing and if_empty and not reset:
        console().print(f"demo data not loaded: the database already has {existing} calls")
        return
    if existing and not reset:
        fail(f"the database already has {existing} calls; use --reset to replace them", 1)
    if reset:
        demo.reset_data(state.engine)
    with Progress(
        TextColumn("[bold]demo[/] {task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
        disable=as_json,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def report(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total)

        summary = demo.load_demo(
            state.engine,
            now=datetime.now(UTC),
            seed=seed,
            days=days,
            calls_per_day=calls_per_day,
            report=report,
        )
    if as_json:
        print_json(
            {
                "seed": summary.seed,
                "days": summary.days,
                "customers": summary.customers,
                "calls": summary.calls,
                "appointments": summary.appointments,
                "injected": summary.injected,
                "injected_percent": summary.shares(),
                "auto_corrected_by_database": summary.auto_corrected_by_database,
                "circuits": summary.circuits,
            }
        )
        return
    console().print(
        f"{summary.customers} customers, {summary.calls} calls over {summary.days} days, "
        f"{summary.appointments} appointments, {summary.circuits} circuit breakers (seed {seed})",
        highlight=False,
    )
    table = Table("inconsistency written past the guarantees", "rows", "% of calls")
    for kind, count in summary.injected.items():
        table.add_row(kind, str(count), f"{summary.shares()[kind]:.2f}")
    console().print(table)
    console().print(
        f"{summary.auto_corrected_by_database} inconsistent writes were auto-corrected by the "
        "database itself. Next: 'bookingguard check --all'.",
        highlight=False,
    )
