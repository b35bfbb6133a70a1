"""The bulk-import path: many appointments in one statement, their calls linked in one more.

With the link trigger on, the insert already links; the re-sync then finds nothing
to do. With it off (a staged roll-out, or a migration from a legacy system), the
re-sync is what links the imported calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select, update

from bookingguard.db.models import Base, is_live_appointment

__all__ = ["ImportResult", "import_appointments", "resync_call_links"]

_COLUMNS = (
    "call_id",
    "customer_id",
    "event_type_id",
    "calcom_v2_booking_id",
    "calcom_booking_uid",
    "starts_at",
    "ends_at",
    "status",
    "idempotency_key",
)


@dataclass(frozen=True)
class ImportResult:
    inserted: int
    calls_linked: int


def import_appointments(connection: Connection, rows: Iterable[Mapping[str, Any]]) -> ImportResult:
    """Insert ``rows`` (COPY on PostgreSQL, one prepared statement on SQLite), then link calls."""
    records = [{column: row.get(column) for column in _COLUMNS} for row in rows]
    for record in records:
        record["status"] = record["status"] or "booked"
    if not records:
        return ImportResult(0, 0)
    if connection.dialect.name == "postgresql":
        _copy(connection, records)
    else:
        connection.execute(Base.metadata.tables["appointments"].insert(), records)
    return ImportResult(len(records), resync_call_links(connection))


def _copy(connection: Connection, records: list[dict[str, Any]]) -> None:
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    columns = ", ".join(_COLUMNS)
    with cursor.copy(f"COPY appointments ({columns}) FROM STDIN") as copy:
        for record in records:
            copy.write_row(tuple(_copy_value(record[column]) for column in _COLUMNS))


def _copy_value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("naive datetime in an imported appointment; give an aware UTC value")
    return value


def resync_call_links(connection: Connection, *, call_ids: Iterable[int] | None = None) -> int:
    """Link, in one UPDATE, every call (or the given ones) that has a live appointment but is
    not marked as linked. Returns the number of calls changed."""
    calls = Base.metadata.tables["calls"]
    appointments = Base.metadata.tables["appointments"]
    live = exists(
        select(1).where(
            appointments.c.call_id == calls.c.id, is_live_appointment(appointments.c.status)
        )
    )
    needs_link = or_(
        calls.c.appointment_made.is_not(True),
        calls.c.appointment_link_status.is_distinct_from("linked"),
        calls.c.session_outcome.is_distinct_from("appointment_booked"),
    )
    condition = and_(live, needs_link)
    if call_ids is not None:
        ids = sorted(set(call_ids))
        if not ids:
            return 0
        condition = and_(condition, calls.c.id.in_(ids))
    result = connection.execute(
        update(calls)
        .where(condition)
        .values(
            appointment_made=True,
            session_outcome="appointment_booked",
            appointment_link_status="linked",
            appointment_linked_at=func.current_timestamp(),
            updated_at=func.current_timestamp(),
        )
    )
    return result.rowcount
