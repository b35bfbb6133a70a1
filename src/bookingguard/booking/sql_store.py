"""``SqlBookingStore``: the ``BookingStore`` over an engine's sessions.

The booking's own reads and writes go through ``bookingguard.db.booking_queries``,
whose implementation for the engine's database is chosen once, here, when the store
is built. The records of a failed booking (``rollback``) each own one transaction on
the engine, in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking.rollback import rollback_on_failure, write_failure_record
from bookingguard.db.booking_queries import (
    AppointmentReadBack,
    CallAppointment,
    Claimed,
    NewAppointment,
    NewClaim,
    ReadBack,
    StaleClaim,
    StoredAppointment,
    booking_queries_for,
)
from bookingguard.db.spool import FailureRecord
from bookingguard.db.uow import UnitOfWork

__all__ = ["SqlBookingStore"]

T = TypeVar("T")


class SqlBookingStore:
    """Bookings in the database the sessions are bound to."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._queries = booking_queries_for(sessions)

    @property
    def engines(self) -> tuple[Engine, ...]:
        """The engines whose pools serve the store (events on them count its statements)."""
        return self._queries.engines

    @property
    def driver_statements(self) -> int:
        """Statements run around the engines' events (benchmarks add them to the events' count)."""
        return self._queries.driver_statements

    async def look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        return await self._queries.look_up(retell_call_id, key)

    async def claim(self, claim: NewClaim) -> Claimed:
        return await self._queries.claim(claim)

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        return await self._queries.write_and_link(appointment, check)

    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        return await self._queries.read_back(call_id, appointment_id)

    async def claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        return await self._queries.claim_stored(key, uid)

    async def cancel_appointment(self, appointment_id: int, now: datetime) -> None:
        await self._queries.cancel_appointment(appointment_id, now)

    async def release_claim(self, appointment_id: int) -> None:
        await self._queries.release_claim(appointment_id)

    async def close_claim(self, appointment_id: int, now: datetime) -> bool:
        return await self._queries.close_claim(appointment_id, now)

    async def take_over_claim(self, appointment_id: int, *, seen: datetime, now: datetime) -> bool:
        return await self._queries.take_over_claim(appointment_id, seen=seen, now=now)

    async def stale_claims(
        self, *, before: datetime, created_since: datetime, limit: int
    ) -> list[StaleClaim]:
        return await self._queries.stale_claims(
            before=before, created_since=created_since, limit=limit
        )

    async def latest_appointment(self, retell_call_id: str) -> CallAppointment | None:
        return await self._queries.latest_appointment(retell_call_id)

    async def reschedule_appointment(self, old_appointment_id: int, new: NewAppointment) -> int:
        return await self._queries.reschedule_appointment(old_appointment_id, new)

    async def roll_back(
        self, call_id: int, *, reason: str, details: Mapping[str, Any], now: datetime
    ) -> None:
        await anyio.to_thread.run_sync(
            lambda: rollback_on_failure(
                self._sessions, call_id=call_id, reason=reason, details=details, now=now
            )
        )

    async def record_failure(self, record: FailureRecord) -> int:
        def write() -> int:
            with UnitOfWork(self._sessions) as uow:
                call_id = write_failure_record(uow.session, record)
                uow.commit()
            return call_id

        return await anyio.to_thread.run_sync(write)

    async def aclose(self) -> None:
        await self._queries.aclose()
