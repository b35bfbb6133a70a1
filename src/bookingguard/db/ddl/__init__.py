"""Installing, inspecting and switching the database-side guarantees, per dialect.

This is the one place that asks which dialect it runs on; callers pass a
connection and get the same behaviour on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from bookingguard.db.ddl import postgresql, sqlite
from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES

__all__ = [
    "TRIGGER_GROUPS",
    "TriggerStatus",
    "drop_guarantees",
    "ensure_alert_partitions",
    "install_guarantees",
    "install_live_definition",
    "set_triggers_enabled",
    "trigger_status",
]

#: Logical guarantees, so a staged roll-out can switch one on at a time.
TRIGGER_GROUPS: dict[str, str] = {
    "calls_default_direction": "direction",
    "calls_customer_link": "customer_link",
    "calls_customer_relink": "customer_link",
    "calls_outcome_consistency": "outcome",
    "calls_outcome_consistency_update": "outcome",
    "calls_log_correction": "outcome",
    "appointments_link_inserted": "appointment_link",
    "appointments_unlink_deleted": "appointment_link",
    "appointments_resync_updated": "appointment_link",
}


@dataclass(frozen=True)
class TriggerStatus:
    name: str
    table: str
    group: str
    enabled: bool


def _is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def _execute_pg_ddl(connection: Connection, statement: str) -> None:
    # psycopg reads '%' as a placeholder whenever parameters are passed; PL/pgSQL's
    # format() uses '%I' and '%L', so they are escaped here.
    connection.exec_driver_sql(statement.replace("%", "%%"))


def install_guarantees(
    connection: Connection,
    *,
    not_live: Sequence[str] = NOT_LIVE_APPOINTMENT_STATUSES,
    as_of: int = postgresql.LATEST_FUNCTIONS,
) -> None:
    """Create every trigger (and, on PostgreSQL, the CHECK backstop and partition upkeep).

    An appointment is live unless its status is in ``not_live``; on PostgreSQL the
    functions are those of revision ``as_of`` (SQLite's have not changed since the
    first). Migrations pass what their revision had.
    """
    if _is_postgresql(connection):
        for statement in (
            *postgresql.functions(not_live, as_of=as_of),
            *(trigger.create for trigger in postgresql.TRIGGERS),
            postgresql.CHECK_CONSTRAINT,
            postgresql.PARTITION_FUNCTION,
        ):
            _execute_pg_ddl(connection, statement)
    else:
        for sqlite_trigger in sqlite.triggers(not_live):
            connection.exec_driver_sql(sqlite_trigger.create)


def install_live_definition(
    connection: Connection,
    *,
    not_live: Sequence[str],
    enabled: Iterable[str] | None = None,
    as_of: int = postgresql.LATEST_FUNCTIONS,
) -> None:
    """Redefine the link triggers: an appointment is live unless its status is in
    ``not_live``, and (PostgreSQL) the functions are those of revision ``as_of``.
    A trigger switched off stays off; on SQLite, where switching off drops a trigger,
    ``enabled`` names the ones that are on (default: those present now)."""
    if _is_postgresql(connection):
        for statement in postgresql.functions(not_live, as_of=as_of):
            _execute_pg_ddl(connection, statement)
        return
    on = set(
        enabled
        if enabled is not None
        else (status.name for status in trigger_status(connection) if status.enabled)
    )
    for sqlite_trigger in sqlite.triggers(not_live):
        if sqlite_trigger.table == "appointments" and sqlite_trigger.name in on:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {sqlite_trigger.name}")
            connection.exec_driver_sql(sqlite_trigger.create)


def drop_guarantees(connection: Connection) -> None:
    """Remove what ``install_guarantees`` created, leaving the tables alone."""
    if _is_postgresql(connection):
        connection.exec_driver_sql(
            f"ALTER TABLE calls DROP CONSTRAINT IF EXISTS {postgresql.CHECK_CONSTRAINT_NAME}"
        )
        for trigger in postgresql.TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger.name} ON {trigger.table}")
        for name in postgresql.FUNCTION_NAMES:
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
        connection.exec_driver_sql(
            "DROP FUNCTION IF EXISTS bookingguard_ensure_alert_partitions(date, integer)"
        )
    else:
        for sqlite_trigger in sqlite.TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {sqlite_trigger.name}")


def trigger_status(connection: Connection) -> list[TriggerStatus]:
    """Every guarantee trigger and whether it is enabled now."""
    if _is_postgresql(connection):
        rows = connection.execute(
            text(
                "SELECT t.tgname, t.tgenabled <> 'D' FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal "
                "AND c.relname IN ('calls', 'appointments')"
            )
        ).all()
        enabled = {str(name): bool(flag) for name, flag in rows}
        return [
            TriggerStatus(t.name, t.table, TRIGGER_GROUPS[t.name], enabled.get(t.name, False))
            for t in postgresql.TRIGGERS
        ]
    present = set(
        connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
    )
    return [
        TriggerStatus(t.name, t.table, TRIGGER_GROUPS[t.name], t.name in present)
        for t in sqlite.TRIGGERS
    ]


def _select(connection: Connection, names: Sequence[str]) -> list[str]:
    known = [status.name for status in trigger_status(connection)]
    if not names:
        return known
    chosen: list[str] = []
    for name in names:
        matches = [t for t in known if name in (t, TRIGGER_GROUPS[t])]
        if not matches:
            groups = sorted(set(TRIGGER_GROUPS.values()))
            raise ValueError(
                f"unknown trigger or group {name!r}; known: {', '.join(groups + known)}"
            )
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def set_triggers_enabled(
    connection: Connection, *, enabled: bool, names: Iterable[str] = ()
) -> list[str]:
    """Switch the named triggers or groups (all when none are named); return the trigger names."""
    chosen = _select(connection, list(names))
    if _is_postgresql(connection):
        tables = {t.name: t.table for t in postgresql.TRIGGERS}
        verb = "ENABLE" if enabled else "DISABLE"
        for name in chosen:
            connection.exec_driver_sql(f"ALTER TABLE {tables[name]} {verb} TRIGGER {name}")
        return chosen
    creates = {t.name: t.create for t in sqlite.TRIGGERS}
    for name in chosen:
        statement = creates[name] if enabled else f"DROP TRIGGER IF EXISTS {name}"
        connection.exec_driver_sql(statement)
    return chosen


def ensure_alert_partitions(connection: Connection, *, start: date, months: int = 2) -> int:
    """Create monthly alert partitions from ``start``'s month on; SQLite keeps one plain table."""
    if not _is_postgresql(connection):
        return 0
    created = connection.execute(
        text("SELECT bookingguard_ensure_alert_partitions(:start, :months)"),
        {"start": start, "months": months},
    ).scalar_one()
    return int(created)
