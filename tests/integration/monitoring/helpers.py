"""Crafting legacy data for the monitor's tests: rows the guarantees would have prevented."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from bookingguard.db import ddl
from bookingguard.db.ddl.postgresql import CHECK_CONSTRAINT_NAME
from bookingguard.db.models import Appointment, Call
from tests.conftest import TestDatabase

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock injected wherever time is read."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def play_legacy(database: TestDatabase) -> None:
    """Switch the guarantees off (and drop PostgreSQL's CHECK backstop) to craft bad rows."""
    with database.engine.begin() as connection:
        ddl.set_triggers_enabled(connection, enabled=False)
        if database.dialect == "postgresql":
            connection.exec_driver_sql(
                f"ALTER TABLE calls DROP CONSTRAINT IF EXISTS {CHECK_CONSTRAINT_NAME}"
            )


def add_call(connection: Connection, key: str, *, created_at: datetime = NOW, **values: Any) -> int:
    row = {
        "retell_call_id": key,
        "direction": "inbound",
        "appointment_made": False,
        "booking_failed": False,
        "created_at": created_at,
        "updated_at": created_at,
        **values,
    }
    result = connection.execute(Call.__table__.insert().values(**row))
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def add_appointment(
    connection: Connection, call_id: int | None, *, created_at: datetime = NOW, **values: Any
) -> int:
    row = {
        "call_id": call_id,
        "status": "booked",
        "starts_at": created_at + timedelta(days=1),
        "created_at": created_at,
        "updated_at": created_at,
        **values,
    }
    result = connection.execute(Appointment.__table__.insert().values(**row))
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def booked_call(connection: Connection, key: str, *, created_at: datetime = NOW) -> int:
    """A consistent booked call with its live appointment and linked status."""
    call_id = add_call(
        connection,
        key,
        created_at=created_at,
        appointment_made=True,
        session_outcome="appointment_booked",
        appointment_link_status="linked",
        appointment_linked_at=created_at,
    )
    add_appointment(connection, call_id, created_at=created_at, calcom_booking_uid=f"uid-{key}")
    return call_id


def scalar(database: TestDatabase, sql: str, **params: Any) -> Any:
    with database.engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def rows(database: TestDatabase, sql: str, **params: Any) -> list[Any]:
    with database.engine.connect() as connection:
        return list(connection.execute(text(sql), params).all())


Crafter = Callable[[Connection], Any]
