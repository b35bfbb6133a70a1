"""``BookingQueries``: the booking path's reads and writes, whose fast path differs per database.

The statements are in ``statements``, what they take and give in ``rows``. The parts
that are the same on both databases (creating a call no webhook has announced yet,
claiming an appointment a Cal.com webhook stored first, cancelling an appointment,
releasing or taking over a booking's claim) run on the sync engine in a worker thread,
never blocking the event loop.

A booking's claim is the appointment row for its idempotency key in
``pending_creation``, inserted (insert-or-ignore on the unique key) before Cal.com is
asked: exactly one request per key inserts it, in any process. The write that records
Cal.com's booking fills that row and links the call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

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
from bookingguard.db.booking_queries.statements import (
    CLOSE_CLAIM,
    FIND_STORED,
    INSERT_APPOINTMENT,
    LATEST_OF_CALL,
    LINK_CALL,
    LOOK_UP,
    RELEASE_CLAIM,
    STALE_CLAIMS,
    TAKE_OVER_CLAIM,
    in_thread,
    insert_claim,
    latest_row,
    looked_up,
    stale_claim,
)
from bookingguard.db.models import Appointment, Call
from bookingguard.db.uow import UnitOfWork

__all__ = ["BookingQueries"]

T = TypeVar("T")


class BookingQueries(ABC):
    """The booking path's database work for one engine; one subclass per database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        # The engine the sessions are bound to, for work that holds one connection throughout.
        self._engine: Engine = sessions.kw["bind"]

    @property
    def engines(self) -> tuple[Engine, ...]:
        """The sync engines whose pools serve these queries (events count their statements)."""
        return (self._engine,)

    @property
    def driver_statements(self) -> int:
        """Statements run on a driver connection directly, unseen by the engines' events."""
        return 0

    @abstractmethod
    async def look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        """The call's id (created if no webhook has yet) and any appointment stored for ``key``."""

    @abstractmethod
    async def claim(self, claim: NewClaim) -> Claimed:
        """The call (created if no webhook has yet) and the row for the key, claimed if there
        was none: one transaction, committed."""

    @abstractmethod
    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        """Fill the key's claim with ``appointment`` and link its call, committed; then
        ``check(appointment_id, read)``.

        The read-back runs on the write's connection, after the commit: it sees what
        is really stored. Raises ``IntegrityError`` when the claim is no longer open or
        the Cal.com booking is already stored, another ``SQLAlchemyError`` when the
        write fails.
        """

    @abstractmethod
    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        """The appointment (else the call's latest) with the call's flags, or None."""

    async def claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        """The appointment stored for ``key`` or Cal.com booking ``uid``, claimed for ``key``."""
        return await in_thread(self._claim_stored, key, uid)

    async def cancel_appointment(self, appointment_id: int, now: datetime) -> None:
        """Mark the appointment cancelled (the database unlinks its call)."""
        await in_thread(self._cancel_appointment, appointment_id, now)

    async def release_claim(self, appointment_id: int) -> None:
        """Delete the claim, if it is still one: Cal.com created nothing for its key."""
        await in_thread(self._execute, RELEASE_CLAIM, {"appointment_id": appointment_id})

    async def close_claim(self, appointment_id: int, now: datetime) -> bool:
        """Cancel the claim, if it is still one; False if it is not."""
        params = {"appointment_id": appointment_id, "now": now}
        return await in_thread(self._execute, CLOSE_CLAIM, params) == 1

    async def take_over_claim(self, appointment_id: int, *, seen: datetime, now: datetime) -> bool:
        """Make the claim last changed at ``seen`` this request's; False if it changed since."""
        params = {"appointment_id": appointment_id, "seen": seen, "now": now}
        return await in_thread(self._execute, TAKE_OVER_CLAIM, params) == 1

    async def stale_claims(
        self, *, before: datetime, created_since: datetime, limit: int
    ) -> list[StaleClaim]:
        """Claims unchanged since ``before`` (taken since ``created_since``), oldest first."""
        params = {"before": before, "created_since": created_since, "limit": limit}
        return await in_thread(self._stale_claims, params)

    async def latest_appointment(self, retell_call_id: str) -> CallAppointment | None:
        """The call's latest appointment (any status), or None."""
        return await in_thread(self._latest_appointment, retell_call_id)

    async def reschedule_appointment(self, old_appointment_id: int, new: NewAppointment) -> int:
        """Store ``new`` (linking its call) and mark the old appointment rescheduled, in one
        transaction; the new appointment's id."""
        return await in_thread(self._reschedule_appointment, old_appointment_id, new)

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the queries opened; the engine is its owner's to dispose."""

    def _create_call(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        """``look_up`` of a call that may not exist yet: create it, or find the racing writer's."""
        params = {"retell_call_id": retell_call_id, "key": key}
        for _ in range(2):
            with UnitOfWork(self._sessions) as uow:
                row = uow.session.connection().execute(LOOK_UP, params).first()
                if row is not None:
                    return looked_up(row)
                call = Call(retell_call_id=retell_call_id, call_status="ongoing")
                uow.session.add(call)
                try:
                    uow.session.flush()
                    uow.commit()
                except IntegrityError:
                    continue
                return call.id, None
        raise RuntimeError(f"call {retell_call_id} neither found nor created")

    def _claim(self, claim: NewClaim) -> Claimed:
        """``claim`` in one transaction: find or create the call, then find or insert the
        key's row. A racing request's claim, committed while this one's insert waited,
        is read in the next round."""
        params = claim.params()
        insert_statement = insert_claim(Appointment.__table__, self._engine)  # type: ignore[arg-type]
        for _ in range(3):
            with UnitOfWork(self._sessions) as uow:
                connection = uow.session.connection()
                row = connection.execute(LOOK_UP, params).first()
                if row is not None:
                    call_id, stored = looked_up(row)
                else:
                    call = Call(retell_call_id=claim.retell_call_id, call_status="ongoing")
                    uow.session.add(call)
                    try:
                        uow.session.flush()
                    except IntegrityError:
                        continue
                    call_id, stored = call.id, None
                won = stored is None
                if stored is None:
                    claim_id = connection.execute(
                        insert_statement, params | {"claim_call_id": call_id}
                    ).scalar()
                    if claim_id is None:
                        continue
                    stored = claim.stored(claim_id, call_id)
                uow.commit()
                return Claimed(call_id, stored, won)
        raise RuntimeError(f"key {claim.key} neither claimed nor found")

    def _execute(self, statement: Any, params: dict[str, Any]) -> int:
        """``statement`` in a transaction of its own; the rows it changed."""
        with UnitOfWork(self._sessions) as uow:
            changed = uow.session.connection().execute(statement, params).rowcount
            uow.commit()
        return int(changed)

    def _claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        with UnitOfWork(self._sessions) as uow:
            row = uow.session.execute(FIND_STORED, {"key": key, "uid": uid}).first()
            if row is None:
                return None
            if row.idempotency_key is None:
                # Stored by the Cal.com webhook before us: claim it for this key.
                uow.session.execute(
                    update(Appointment).where(Appointment.id == row.id).values(idempotency_key=key)
                )
                uow.commit()
            return StoredAppointment(row[0], row[1], row[2], row[3], row[4])

    def _cancel_appointment(self, appointment_id: int, now: datetime) -> None:
        with UnitOfWork(self._sessions) as uow:
            uow.session.execute(
                update(Appointment)
                .where(Appointment.id == appointment_id)
                .values(status="cancelled", updated_at=now)
            )
            uow.commit()

    def _stale_claims(self, params: dict[str, Any]) -> list[StaleClaim]:
        with UnitOfWork(self._sessions) as uow:
            return [stale_claim(row) for row in uow.session.execute(STALE_CLAIMS, params)]

    def _latest_appointment(self, retell_call_id: str) -> CallAppointment | None:
        with UnitOfWork(self._sessions) as uow:
            row = uow.session.execute(LATEST_OF_CALL, {"retell_call_id": retell_call_id}).first()
        return latest_row(row)

    def _reschedule_appointment(self, old_appointment_id: int, new: NewAppointment) -> int:
        # The new appointment first: the call then always has a live one, so no trigger
        # unlinks it in between, whichever statuses the database counts as live.
        with UnitOfWork(self._sessions) as uow:
            connection = uow.session.connection()
            params = new.params()
            stored = connection.execute(
                select(Appointment.id).where(
                    Appointment.calcom_booking_uid == new.calcom_booking_uid
                )
            ).scalar()
            if stored is None:
                new_id: int = connection.execute(INSERT_APPOINTMENT, params).scalar_one()
            else:
                # The Cal.com webhook stored the new booking first: take it over.
                new_id = stored
                connection.execute(
                    update(Appointment)
                    .where(Appointment.id == stored)
                    .values(
                        call_id=new.call_id,
                        idempotency_key=new.idempotency_key,
                        status=new.status,
                        updated_at=new.now,
                    )
                )
            connection.execute(LINK_CALL, params)
            connection.execute(
                update(Appointment)
                .where(Appointment.id == old_appointment_id)
                .values(status="rescheduled", updated_at=new.now)
            )
            uow.commit()
        return new_id
