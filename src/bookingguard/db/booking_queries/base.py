"""``BookingQueries``: the booking path's reads and writes, whose fast path differs per database.

The statements are built once, with bound parameters: on a busy host, building an
expression costs more than running it. The parts that are the same on both
databases (creating a call no webhook has announced yet, claiming an appointment a
Cal.com webhook stored first, cancelling an appointment, releasing or taking over a
booking's claim) run on the sync engine in a worker thread, never blocking the event
loop.

A booking's claim is the appointment row for its idempotency key in
``pending_creation``, inserted (insert-or-ignore on the unique key) before Cal.com is
asked: exactly one request per key inserts it, in any process. The write that records
Cal.com's booking fills that row and links the call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import anyio.to_thread
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.dialects import dialect_of
from bookingguard.db.models import (
    CLAIM_STATUS,
    NOT_LIVE_APPOINTMENT_STATUSES,
    Appointment,
    Call,
)
from bookingguard.db.uow import UnitOfWork

__all__ = [
    "AppointmentReadBack",
    "BookingQueries",
    "CallAppointment",
    "Claimed",
    "NewAppointment",
    "NewClaim",
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
    #: When the row last changed: for a claim, when it was taken (or taken over).
    updated_at: datetime | None = None

    @property
    def claimed(self) -> bool:
        """Whether the row is still a claim, its booking not yet recorded."""
        return self.status == CLAIM_STATUS


@dataclass(frozen=True, kw_only=True)
class NewClaim:
    """A booking's claim on its idempotency key, taken before Cal.com is asked."""

    retell_call_id: str
    key: str
    event_type_id: int
    starts_at: datetime
    now: datetime

    def params(self) -> dict[str, object]:
        """The parameters of the claim's look-up and insert."""
        return {
            "retell_call_id": self.retell_call_id,
            "key": self.key,
            "claim_event_type_id": self.event_type_id,
            "claim_starts_at": self.starts_at.astimezone(UTC),
            "claim_now": self.now,
        }

    def stored(self, appointment_id: int, call_id: int) -> StoredAppointment:
        """The claim as inserted."""
        return StoredAppointment(
            appointment_id,
            call_id,
            self.starts_at.astimezone(UTC),
            CLAIM_STATUS,
            None,
            self.now,
        )


@dataclass(frozen=True)
class Claimed:
    """What a claim found: the call, the row for the key, and whether this request took it."""

    call_id: int
    appointment: StoredAppointment
    #: True when this request inserted the claim: it, and no other, asks Cal.com.
    won: bool


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
    """A Cal.com booking to store as the call's appointment, linking the call.

    The booking path's write fills the claim on ``idempotency_key`` with it; a
    reschedule inserts it.
    """

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
        Appointment.updated_at,
    )
    .select_from(Call)
    .outerjoin(Appointment, Appointment.idempotency_key == bindparam("key"))
    .where(Call.retell_call_id == bindparam("retell_call_id"))
)
#: The columns a claim sets, and the values it inserts (bound as ``claim_<name>``).
CLAIM_COLUMNS = (
    "call_id",
    "event_type_id",
    "starts_at",
    "status",
    "idempotency_key",
    "created_at",
    "updated_at",
)


def claim_values(call_id: Any) -> tuple[Any, ...]:
    """A claim's values, its call's id given (a parameter, or a column of a select)."""
    return (
        call_id,
        bindparam("claim_event_type_id", type_=Appointment.event_type_id.type),
        bindparam("claim_starts_at", type_=Appointment.starts_at.type),
        literal(CLAIM_STATUS),
        bindparam("key", type_=Appointment.idempotency_key.type),
        bindparam("claim_now", type_=Appointment.created_at.type),
        bindparam("claim_now", type_=Appointment.updated_at.type),
    )


def insert_claim(table: Table, bind: Engine) -> Any:
    """The claim's insert for ``bind``'s database: nothing when the key is claimed already."""
    statement = dialect_of(bind).insert_or_ignore(table, conflict_columns=["idempotency_key"])
    values = dict(zip(CLAIM_COLUMNS, claim_values(bindparam("claim_call_id")), strict=True))
    return statement.values(values).returning(Appointment.id)


# The claim becomes the booking: only while it is still a claim (a webhook of the same
# booking may have filled it first). Its creation time becomes the write's, which the
# post-booking validation measures the appointment's age from.
FILL_CLAIM = (
    update(Appointment)
    .where(
        Appointment.idempotency_key == bindparam("new_idempotency_key"),
        Appointment.status == CLAIM_STATUS,
    )
    .values(
        event_type_id=bindparam("new_event_type_id"),
        calcom_v2_booking_id=bindparam("new_calcom_v2_booking_id"),
        calcom_booking_uid=bindparam("new_calcom_booking_uid"),
        starts_at=bindparam("new_starts_at"),
        ends_at=bindparam("new_ends_at"),
        status=bindparam("new_status"),
        created_at=bindparam("new_created_at"),
        updated_at=bindparam("new_updated_at"),
    )
    .returning(Appointment.id)
)
RELEASE_CLAIM = delete(Appointment).where(
    Appointment.id == bindparam("appointment_id"), Appointment.status == CLAIM_STATUS
)
TAKE_OVER_CLAIM = (
    update(Appointment)
    .where(
        Appointment.id == bindparam("appointment_id"),
        Appointment.status == CLAIM_STATUS,
        Appointment.updated_at == bindparam("seen"),
    )
    .values(updated_at=bindparam("now"))
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
    # A claim is no appointment yet: nothing to move or cancel.
    .where(Call.retell_call_id == bindparam("retell_call_id"), Appointment.status != CLAIM_STATUS)
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
    updated = row[6].astimezone(UTC) if row[6] is not None else None
    stored = (
        StoredAppointment(row[1], row[2], start, row[4], row[5], updated)
        if row[1] is not None
        else None
    )
    return row[0], stored


def claim_gone(key: str) -> IntegrityError:
    """The error of a write whose claim is no longer there to fill (or holds another booking)."""
    return IntegrityError(
        "UPDATE appointments", {"key": key}, LookupError(f"no open claim for key {key}")
    )


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

    async def take_over_claim(self, appointment_id: int, *, seen: datetime, now: datetime) -> bool:
        """Make the claim last changed at ``seen`` this request's; False if it changed since."""
        params = {"appointment_id": appointment_id, "seen": seen, "now": now}
        return await in_thread(self._execute, TAKE_OVER_CLAIM, params) == 1

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
