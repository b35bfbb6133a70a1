"""The booking path's queries on SQLite: the sync engine, in worker threads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Connection

from bookingguard.db.booking_queries.base import (
    BookingQueries,
)
from bookingguard.db.booking_queries.rows import (
    AppointmentReadBack,
    Claimed,
    NewAppointment,
    NewClaim,
    ReadBack,
    StoredAppointment,
)
from bookingguard.db.booking_queries.statements import (
    FILL_CLAIM,
    LINK_CALL,
    LOOK_UP,
    claim_gone,
    in_thread,
    looked_up,
    read_appointment,
)

__all__ = ["SqliteBookingQueries"]

T = TypeVar("T")


class SqliteBookingQueries(BookingQueries):
    """SQLite has no network round trips to save: each operation is a worker-thread hop."""

    async def look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        return await in_thread(self._look_up, retell_call_id, key)

    async def claim(self, claim: NewClaim) -> Claimed:
        return await in_thread(self._claim, claim)

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        connection = await in_thread(self._engine.connect)
        try:
            appointment_id = await in_thread(self._write, connection, appointment)

            async def read() -> AppointmentReadBack | None:
                return await in_thread(
                    lambda: read_appointment(
                        connection, call_id=appointment.call_id, appointment_id=appointment_id
                    )
                )

            return appointment_id, await check(appointment_id, read)
        finally:
            await in_thread(connection.close)

    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        return await in_thread(self._read_back, call_id, appointment_id)

    async def aclose(self) -> None:
        """Nothing to release: the sync engine is its owner's."""

    def _look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        with self._engine.connect() as connection:
            row = connection.execute(
                LOOK_UP, {"retell_call_id": retell_call_id, "key": key}
            ).first()
        if row is not None:
            return looked_up(row)
        return self._create_call(retell_call_id, key)

    def _write(self, connection: Connection, appointment: NewAppointment) -> int:
        """The claim filled and the call's flags, in one transaction."""
        params = appointment.params()
        with connection.begin():
            appointment_id: int | None = connection.execute(FILL_CLAIM, params).scalar()
            if appointment_id is None:
                raise claim_gone(appointment.idempotency_key)
            connection.execute(LINK_CALL, params)
        return appointment_id

    def _read_back(self, call_id: int, appointment_id: int | None) -> AppointmentReadBack | None:
        with self._engine.connect() as connection:
            return read_appointment(connection, call_id=call_id, appointment_id=appointment_id)
