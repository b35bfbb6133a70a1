"""Per-dialect performance knobs for the monitor's statements.

Planner settings are local to the transaction (``set_config(…, true)``, as ``SET LOCAL``):
they end with the run's transaction and never leak into a pooled connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import BigInteger, TextualSelect, bindparam, column, text
from sqlalchemy.orm import Session

__all__ = ["bound_ids", "ids_parameter", "ids_value", "plan_monitor_run"]


def plan_monitor_run(session: Session) -> None:
    """Plan the transaction's statements in one process, each for the values it is given.

    No parallel workers: a window reads a few thousand rows through covering indexes:
    starting parallel workers costs more than the scan (measured 87 ms against 15 ms). A
    scan of every row merge-joins calls and live appointments along their id-ordered
    covering indexes; offered workers, the planner prefers a parallel hash join of the
    whole tables that is about twice as slow and spills to disk.

    Custom plans: psycopg prepares a statement the fifth time a connection runs it, and
    PostgreSQL may then settle on a generic plan, which does not know the window's bounds
    and guesses how many rows they keep: window rules ran about twice as slow from the
    sixth run on (orphaned_appointment 18 ms against 5.5 ms, the shared scan of calls 18
    against 10). Planning each statement anew costs a fraction of a millisecond.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text(
            "SELECT set_config('max_parallel_workers_per_gather', '0', true),"
            " set_config('plan_cache_mode', 'force_custom_plan', true)"
        )
    )


def bound_ids(session: Session, ids: Sequence[int]) -> TextualSelect:
    """``ids`` as a one-column select (``id``) bound as one parameter, not one per id.

    Ten thousand ids as ten thousand parameters cost about 100 ms to render, bind and
    plan before the statement does anything; one ``BIGINT[]`` (PostgreSQL) or one JSON
    array (SQLite, which has no arrays) costs nothing.
    """
    dialect = session.get_bind().dialect.name
    return ids_parameter(dialect, "ids", unique=True, value=ids_value(dialect, ids))


def ids_parameter(
    dialect: str, name: str, *, unique: bool = False, value: object = None
) -> TextualSelect:
    """A one-column select (``id``) of the ids bound to parameter ``name`` (see ``ids_value``).

    For a statement built once and run with its parameters, as ``bound_ids`` is for one
    built with its values.
    """
    if dialect == "postgresql":
        rows = f"SELECT unnest(CAST(:{name} AS BIGINT[])) AS id"
    else:
        rows = f"SELECT value AS id FROM json_each(:{name})"
    return (
        text(rows)
        .bindparams(bindparam(name, value=value, unique=unique))
        .columns(column("id", BigInteger))
    )


def ids_value(dialect: str, ids: Sequence[int]) -> list[int] | str:
    """What an ``ids_parameter`` is given: a list (PostgreSQL) or a JSON array (SQLite)."""
    return list(ids) if dialect == "postgresql" else json.dumps(list(ids))
