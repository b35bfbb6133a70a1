"""Writing past the database-side guarantees, for demo data and tests of the monitor.

The guarantees make inconsistent rows impossible to write; the demo must write
them anyway so the monitor has something to find. ``guarantees_suspended``
switches trigger groups off inside the caller's transaction (and, on
PostgreSQL, the outcome CHECK backstop, re-added ``NOT VALID`` so existing rows
are not re-checked) and restores what was on before, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, text

from bookingguard.db.ddl import TRIGGER_GROUPS, set_triggers_enabled, trigger_status
from bookingguard.db.ddl.postgresql import CHECK_CONSTRAINT, CHECK_CONSTRAINT_NAME

__all__ = ["guarantees_suspended"]


def _has_outcome_check(connection: Connection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(
        text("SELECT 1 FROM pg_constraint WHERE conname = :name"), {"name": CHECK_CONSTRAINT_NAME}
    ).first()
    return found is not None


@contextmanager
def guarantees_suspended(connection: Connection, groups: Sequence[str]) -> Iterator[None]:
    """Suspend the trigger ``groups`` (see ``TRIGGER_GROUPS``) for the ``with`` block."""
    unknown = set(groups) - set(TRIGGER_GROUPS.values())
    if unknown:
        raise ValueError(f"unknown guarantee groups: {', '.join(sorted(unknown))}")
    enabled = [
        status.name
        for status in trigger_status(connection)
        if status.enabled and status.group in groups
    ]
    drop_check = "outcome" in groups and _has_outcome_check(connection)
    if enabled:
        set_triggers_enabled(connection, enabled=False, names=enabled)
    if drop_check:
        connection.exec_driver_sql(f"ALTER TABLE calls DROP CONSTRAINT {CHECK_CONSTRAINT_NAME}")
    # No try/finally: if the block fails, rolling the transaction back restores the
    # triggers and the constraint (DDL is transactional on both dialects).
    yield
    if drop_check:
        connection.exec_driver_sql(f"{CHECK_CONSTRAINT} NOT VALID")
    if enabled:
        set_triggers_enabled(connection, enabled=True, names=enabled)
