"""The booking path's queries on PostgreSQL: SQLAlchemy's async engine, on the event loop.

The claim, the write and the read-back, which every booking waits on, run on
connections of the async engine (``make_async_engine``), in autocommit, through
``AsyncStatements``. The claim is one statement: the call found, the key's row
inserted unless one is there (a data-modifying CTE, insert-or-ignore) and the row
already stored for the key read beside it. A request racing another for the key
finds neither its own insert nor a row its snapshot can see (the other committed
while the insert waited): it reads the key's row again. The write is one statement
too (the claim filled, and the call's link a data-modifying CTE that runs only if
there was a claim to fill), its own transaction: one round trip instead of BEGIN,
UPDATE, UPDATE and COMMIT. A reschedule goes the same way: the call's latest
appointment in one read, then one statement inserting the new appointment with the
call's link and the old appointment's status as CTEs. The rest runs on the sync
engine in worker threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Engine, Table, bindparam, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.async_engine import make_async_engine
from bookingguard.db.async_statements import AsyncStatements
from bookingguard.db.booking_queries.base import (
    BookingQueries,
)
from bookingguard.db.booking_queries.rows import (
    AppointmentReadBack,
    CallAppointment,
    Claimed,
    NewAppointment,
    NewClaim,
    ReadBack,
    StoredAppointment,
)
from bookingguard.db.booking_queries.statements import (
    CLAIM_COLUMNS,
    FILL_CLAIM,
    INSERT_APPOINTMENT,
    LATEST_OF_CALL,
    LINK_CALL,
    LOOK_UP,
    STORED_COLUMNS,
    claim_gone,
    claim_values,
    in_thread,
    latest_row,
    looked_up,
    read_back_row,
    read_back_statement,
)
from bookingguard.db.dialects import PostgresDialect
from bookingguard.db.models import Appointment, Call

__all__ = ["CLAIM", "FILL_AND_LINK", "INSERT_LINK_AND_RESCHEDULE", "PostgresBookingQueries"]

T = TypeVar("T")

_INSERT_AND_LINK = INSERT_APPOINTMENT.add_cte(LINK_CALL.returning(Call.id).cte("linked_call"))
_appointments: Table = Appointment.__table__  # type: ignore[assignment]
_claim_call = (
    select(Call.id).where(Call.retell_call_id == bindparam("retell_call_id")).cte("claim_call")
)
_claimed = (
    PostgresDialect()
    .insert_or_ignore(_appointments, conflict_columns=["idempotency_key"])
    .from_select(list(CLAIM_COLUMNS), select(*claim_values(_claim_call.c.id)))
    .returning(Appointment.id)
    .cte("claimed")
)
# The call's id, the row stored for the key as the statement's snapshot saw it, and the
# claim's id if this statement inserted it; no row when the call does not exist.
CLAIM = (
    select(_claim_call.c.id, *STORED_COLUMNS, select(_claimed.c.id).scalar_subquery())
    .select_from(_claim_call)
    .outerjoin(Appointment, Appointment.idempotency_key == bindparam("key"))
)
_filled = FILL_CLAIM.cte("filled")
FILL_AND_LINK = select(_filled.c.id).add_cte(
    LINK_CALL.where(exists(select(_filled.c.id))).cte("linked_call")
)
# The statement-level triggers run after the whole statement: they see the new appointment
# live beside the old one's new status, so the call is never unlinked in between.
INSERT_LINK_AND_RESCHEDULE = _INSERT_AND_LINK.add_cte(
    update(Appointment)
    .where(Appointment.id == bindparam("old_appointment_id"))
    .values(status="rescheduled", updated_at=bindparam("now"))
    .returning(Appointment.id)
    .cte("rescheduled")
)


class PostgresBookingQueries(BookingQueries):
    """The hot path on the async engine; a booking takes two of its pooled connections."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__(sessions)
        self._async = make_async_engine(self._engine)
        self._statements = AsyncStatements(self._async)

    @property
    def engines(self) -> tuple[Engine, ...]:
        return (self._engine, self._async.sync_engine)

    @property
    def driver_statements(self) -> int:
        return self._statements.statements

    async def look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        params = {"retell_call_id": retell_call_id, "key": key}
        async with self._statements.connection() as connection:
            row = await self._statements.first(connection, LOOK_UP, params)
        if row is not None:
            return looked_up(row)
        return await in_thread(self._create_call, retell_call_id, key)

    async def claim(self, claim: NewClaim) -> Claimed:
        params = claim.params()
        for _ in range(3):
            async with self._statements.connection() as connection:
                row = await self._statements.first(connection, CLAIM, params)
                if row is None:
                    return await in_thread(self._claim, claim)
                if row[7] is not None:
                    return Claimed(row[0], claim.stored(row[7], row[0]), True)
                if row[1] is None:
                    # Claimed by a request that committed after this statement's snapshot.
                    row = await self._statements.first(connection, LOOK_UP, params)
            if row is not None:
                call_id, stored = looked_up(row)
                if stored is not None:
                    return Claimed(call_id, stored, False)
        raise RuntimeError(f"key {claim.key} neither claimed nor found")

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        statements = self._statements
        async with statements.connection() as connection:
            row = await statements.first(connection, FILL_AND_LINK, appointment.params())
            if row is None:
                raise claim_gone(appointment.idempotency_key)
            appointment_id = int(row[0])
            params = {"call_id": appointment.call_id, "appointment_id": appointment_id}

            async def read() -> AppointmentReadBack | None:
                statement = read_back_statement(appointment_id)
                return read_back_row(await statements.first(connection, statement, params))

            return appointment_id, await check(appointment_id, read)

    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        params = {"call_id": call_id, "appointment_id": appointment_id}
        statement = read_back_statement(appointment_id)
        async with self._statements.connection() as connection:
            row = await self._statements.first(connection, statement, params)
        return read_back_row(row)

    async def latest_appointment(self, retell_call_id: str) -> CallAppointment | None:
        async with self._statements.connection() as connection:
            row = await self._statements.first(
                connection, LATEST_OF_CALL, {"retell_call_id": retell_call_id}
            )
        return latest_row(row)

    async def reschedule_appointment(self, old_appointment_id: int, new: NewAppointment) -> int:
        params = new.params() | {"old_appointment_id": old_appointment_id}
        try:
            async with self._statements.connection() as connection:
                row = await self._statements.first(connection, INSERT_LINK_AND_RESCHEDULE, params)
        except IntegrityError:
            # The Cal.com webhook stored the new booking first: take it over.
            return await super().reschedule_appointment(old_appointment_id, new)
        if row is None:
            raise RuntimeError("the appointment INSERT returned no id")
        return int(row[0])

    async def aclose(self) -> None:
        await self._async.dispose()
