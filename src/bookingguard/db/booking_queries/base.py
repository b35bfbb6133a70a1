"""``BookingQueries``: the booking path's reads and writes, whose fast path differs per database.

The statements are built once, with bound parameters: on a busy host, building an
expression costs more than running it. The parts that are the same on both
databases (creating a call no webhook has announced yet, claiming an appointment a
Cal.com webhook stored first, cancelling an appointment) run on the sync engine
in a worker thread, never blocking the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES, Appointment, Call
from bookingguard.db.uow import UnitOfWork

__all__ = [
    "AppointmentReadBack",
    "BookingQueries",
    "CallAppointment",
    "NewAppointment",
    "ReadBack",
    "StoredAppointment",
    "read_appointment",
]

T = TypeVar("T")


@dataclass(frozen=True)
class StoredAppointment:
    """An appointment already stored for an idempotency key (or a Cal.com booking)."""

    appointment_id: int
    call_id: int | None
    start: datetime | None
    status: str
    calcom_booking_uid: str | None


@dataclass(frozen=True)
class CallAppointment:
    """A call's latest appointment: what the agent reschedules or cancels."""

    appointment_id: int
    call_id: int
    event_type_id: int | None
    calcom_booking_uid: str | None
    start: datetime
    status: str

    @property
    def live(self) -> bool:
        return self.status not in NOT_LIVE_APPOINTMENT_STATUSES


@dataclass(frozen=True, kw_only=True)
class NewAppointment:
    """A Cal.com booking to store as the call's appointment, linking the call."""

    call_id: int
    event_type_id: int | None
    calcom_v2_booking_id: int | None
    calcom_booking_uid: str
    starts_at: datetime
    ends_at: datetime
    idempotency_key: str
    now: datetime
    #: ``pending`` while the host has yet to confirm it; a pending appointment is live.
    status: str = "booked"

    def params(self) -> dict[str, object]:
        """The parameters of ``INSERT_APPOINTMENT`` and ``LINK_CALL``."""
        return {
            "new_call_id": self.call_id,
            "new_event_type_id": self.event_type_id,
            "new_calcom_v2_booking_id": self.calcom_v2_booking_id,
            "new_calcom_booking_uid": self.calcom_booking_uid,
            "new_starts_at": self.starts_at.astimezone(UTC),
            "new_ends_at": self.ends_at.astimezone(UTC),
            "new_status": self.status,
            "new_idempotency_key": self.idempotency_key,
            "new_created_at": self.now,
            "new_updated_at": self.now,
            "linked_call_id": self.call_id,
            "now": self.now,
        }


class AppointmentReadBack(NamedTuple):
    """What post-booking validation reads: the appointment, its call's flags alongside."""

    id: int
    call_id: int | None
    calcom_v2_booking_id: int | None
    calcom_booking_uid: str | None
    created_at: datetime
    flags_call_id: int | None
    appointment_made: bool | None
    session_outcome: str | None
    appointment_link_status: str | None


#: The read-back of the appointment just written, on the write's connection.
ReadBack = Callable[[], Awaitable[AppointmentReadBack | None]]

LOOK_UP = (
    select(
        Call.id,
        Appointment.id,
        Appointment.call_id,
        Appointment.starts_at,
        Appointment.status,
        Appointment.calcom_booking_uid,
    )
    .select_from(Call)
    .outerjoin(Appointment, Appointment.idempotency_key == bindparam("key"))
    .where(Call.retell_call_id == bindparam("retell_call_id"))
)
# The appointment's values bind as ``new_<column>``: a parameter named like a column would
# also be SET by the UPDATE below, which SQLAlchemy fills from matching parameter names.
_NEW_APPOINTMENT_COLUMNS = (
    "call_id",
    "event_type_id",
    "calcom_v2_booking_id",
    "calcom_booking_uid",
    "starts_at",
    "ends_at",
    "status",
    "idempotency_key",
    "created_at",
    "updated_at",
)
INSERT_APPOINTMENT = (
    insert(Appointment)
    .values({name: bindparam(f"new_{name}") for name in _NEW_APPOINTMENT_COLUMNS})
    .returning(Appointment.id)
)
# The database links the call on insert. Writing the flags as well keeps the booking
# path correct while triggers are switched off (staged roll-out); the condition makes
# it a no-op, firing no row triggers, when they are on.
LINK_CALL = (
    update(Call)
    .where(
        Call.id == bindparam("linked_call_id"),
        or_(
            Call.appointment_made.is_not(True),
            Call.session_outcome.is_distinct_from("appointment_booked"),
            Call.appointment_link_status.is_distinct_from("linked"),
            Call.booking_failed.is_(True),
        ),
    )
    .values(
        appointment_made=True,
        session_outcome="appointment_booked",
        appointment_link_status="linked",
        appointment_linked_at=bindparam("now"),
        booking_failed=False,
        booking_failure_reason=None,
        updated_at=bindparam("now"),
    )
)
# The read-back: the appointment, with its call's flags joined alongside, in one statement.
_READ_BACK_COLUMNS = select(
    Appointment.id,
    Appointment.call_id,
    Appointment.calcom_v2_booking_id,
    Appointment.calcom_booking_uid,
    Appointment.created_at,
    Call.id.label("flags_call_id"),
    Call.appointment_made,
    Call.session_outcome,
    Call.appointment_link_status,
).outerjoin(Call, Call.id == bindparam("call_id"))
READ_BACK_BY_ID = _READ_BACK_COLUMNS.where(Appointment.id == bindparam("appointment_id"))
READ_BACK_BY_CALL = (
    _READ_BACK_COLUMNS.where(Appointment.call_id == bindparam("call_id"))
    .order_by(Appointment.created_at.desc(), Appointment.id.desc())
    .limit(1)
)
LATEST_OF_CALL = (
    select(
        Appointment.id,
        Appointment.call_id,
        Appointment.event_type_id,
        Appointment.calcom_booking_uid,
        Appointment.starts_at,
        Appointment.status,
    )
    .join(Call, Call.id == Appointment.call_id)
    .where(Call.retell_call_id == bindparam("retell_call_id"))
    .order_by(Appointment.created_at.desc(), Appointment.id.desc())
    .limit(1)
)
_FIND_STORED = select(
    Appointment.id,
    Appointment.call_id,
    Appointment.starts_at,
    Appointment.status,
    Appointment.calcom_booking_uid,
    Appointment.idempotency_key,
).where(
    (Appointment.idempotency_key == bindparam("key"))
    | (Appointment.calcom_booking_uid == bindparam("uid"))
)


def read_back_statement(appointment_id: int | None) -> Any:
    """The read-back of ``appointment_id``, else of the call's latest appointment."""
    return READ_BACK_BY_CALL if appointment_id is None else READ_BACK_BY_ID


def read_back_row(row: Sequence[Any] | None) -> AppointmentReadBack | None:
    return AppointmentReadBack(*row) if row is not None else None


def read_appointment(
    connection: Connection, *, call_id: int, appointment_id: int | None
) -> AppointmentReadBack | None:
    """The read-back on ``connection`` (a session's reads inside its transaction)."""
    row = connection.execute(
        read_back_statement(appointment_id), {"call_id": call_id, "appointment_id": appointment_id}
    ).first()
    return read_back_row(row)


def latest_row(row: Sequence[Any] | None) -> CallAppointment | None:
    """``LATEST_OF_CALL``'s row (its join makes call_id and starts_at non-null)."""
    if row is None:
        return None
    return CallAppointment(row[0], row[1], row[2], row[3], row[4].astimezone(UTC), row[5])


def looked_up(row: Sequence[Any]) -> tuple[int, StoredAppointment | None]:
    """``LOOK_UP``'s row as the call's id and the appointment already stored for the key."""
    start = row[3].astimezone(UTC) if row[3] is not None else None
    stored = (
        StoredAppointment(row[1], row[2], start, row[4], row[5]) if row[1] is not None else None
    )
    return row[0], stored


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread: database work never blocks the event loop."""
    return await anyio.to_thread.run_sync(fn, *args)


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
    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        """Store ``appointment`` and link its call, committed; then ``check(appointment_id, read)``.

        The read-back runs on the write's connection, after the commit: it sees what
        is really stored. Raises ``IntegrityError`` when the key or the Cal.com
        booking is already stored, another ``SQLAlchemyError`` when the write fails.
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

    def _claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        with UnitOfWork(self._sessions) as uow:
            row = uow.session.execute(_FIND_STORED, {"key": key, "uid": uid}).first()
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
