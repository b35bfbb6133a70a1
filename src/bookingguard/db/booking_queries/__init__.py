"""The booking path's database work, one implementation per database.

``booking_queries_for(sessions)`` picks the implementation for the engine the
sessions are bound to, once, when the booking store is built; the booking service
never learns which database it runs on.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.booking_queries.base import (
    BookingQueries,
)
from bookingguard.db.booking_queries.postgresql import PostgresBookingQueries
from bookingguard.db.booking_queries.rows import (
    AppointmentReadBack,
    CallAppointment,
    Claimed,
    NewAppointment,
    NewClaim,
    ReadBack,
    StaleClaim,
    StoredAppointment,
)
from bookingguard.db.booking_queries.sqlite import SqliteBookingQueries
from bookingguard.db.booking_queries.statements import (
    read_appointment,
)
from bookingguard.db.dialects import PostgresDialect, SqliteDialect, dialect_of

__all__ = [
    "AppointmentReadBack",
    "BookingQueries",
    "CallAppointment",
    "Claimed",
    "NewAppointment",
    "NewClaim",
    "PostgresBookingQueries",
    "ReadBack",
    "SqliteBookingQueries",
    "StaleClaim",
    "StoredAppointment",
    "booking_queries_for",
    "read_appointment",
]

_BY_DIALECT: dict[str, type[BookingQueries]] = {
    PostgresDialect.name: PostgresBookingQueries,
    SqliteDialect.name: SqliteBookingQueries,
}


def booking_queries_for(sessions: sessionmaker[Session]) -> BookingQueries:
    """The booking queries for the database ``sessions`` are bound to."""
    return _BY_DIALECT[dialect_of(sessions.kw["bind"]).name](sessions)
