"""Per-transaction planner settings for the monitor's rules (PostgreSQL; nothing on SQLite).

The settings are ``SET LOCAL``: they end with the run's transaction and never leak
into a pooled connection.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["plan_serially"]


def plan_serially(session: Session) -> None:
    """Keep the transaction's statements in one process (no parallel workers).

    A window reads a few thousand rows through covering indexes: starting parallel
    workers costs more than the scan (measured 87 ms against 15 ms). A scan of every
    row merge-joins calls and live appointments along their id-ordered covering
    indexes; offered workers, the planner prefers a parallel hash join of the whole
    tables that is about twice as slow and spills to disk.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
