"""Per-dialect performance knobs for the monitor's statements.

Planner settings are local to the transaction (``set_config(…, true)``, as ``SET LOCAL``):
they end with the run's transaction and never leak into a pooled connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import BigInteger, TextualSelect, bindparam, column, text
from sqlalchemy.orm import Session

__all__ = ["bound_ids", "plan_monitor_run"]


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
    value: list[int] | str = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        rows = "SELECT unnest(CAST(:ids AS BIGINT[])) AS id"
    else:
        rows, value = "SELECT value AS id FROM json_each(:ids)", json.dumps(value)
    return (
        text(rows)
        .bindparams(bindparam("ids", value=value, unique=True))
        .columns(column("id", BigInteger))
    )
