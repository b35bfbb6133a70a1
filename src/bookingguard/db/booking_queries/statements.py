"""The booking path's statements, built once with bound parameters, and their rows read.

On a busy host, building an expression costs more than running it: each statement
here is built at import and compiled once per dialect by whoever runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

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

from bookingguard.db.booking_queries.rows import (
    AppointmentReadBack,
    CallAppointment,
    StaleClaim,
    StoredAppointment,
)
from bookingguard.db.dialects import dialect_of
from bookingguard.db.models import (
    CLAIM_STATUS,
    Appointment,
    Call,
)

__all__ = [
    "CLAIM_COLUMNS",
    "CLOSE_CLAIM",
    "FILL_CLAIM",
    "FIND_STORED",
    "INSERT_APPOINTMENT",
    "LATEST_OF_CALL",
    "LINK_CALL",
    "LOOK_UP",
    "READ_BACK_BY_CALL",
    "READ_BACK_BY_ID",
    "RELEASE_CLAIM",
    "STALE_CLAIMS",
    "STORED_COLUMNS",
    "TAKE_OVER_CLAIM",
    "claim_gone",
    "claim_values",
    "in_thread",
    "insert_claim",
    "latest_row",
    "looked_up",
    "read_appointment",
    "read_back_row",
    "read_back_statement",
    "stale_claim",
]

T = TypeVar("T")


#: What a ``StoredAppointment`` reads of the appointment, in its order.
STORED_COLUMNS = (
    Appointment.id,
    Appointment.call_id,
    Appointment.starts_at,
    Appointment.status,
    Appointment.calcom_booking_uid,
    Appointment.updated_at,
)
LOOK_UP = (
    select(Call.id, *STORED_COLUMNS)
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
CLOSE_CLAIM = (
    update(Appointment)
    .where(Appointment.id == bindparam("appointment_id"), Appointment.status == CLAIM_STATUS)
    .values(status="cancelled", updated_at=bindparam("now"))
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
# Claims unchanged since ``before``, oldest first. Only those created since ``created_since``
# are looked at: the appointments' creation index bounds the read (it covers the status).
STALE_CLAIMS = (
    select(
        *STORED_COLUMNS, Call.retell_call_id, Appointment.idempotency_key, Appointment.event_type_id
    )
    .join(Call, Call.id == Appointment.call_id)
    .where(
        Appointment.created_at >= bindparam("created_since", type_=Appointment.created_at.type),
        Appointment.status == CLAIM_STATUS,
        Appointment.updated_at <= bindparam("before", type_=Appointment.updated_at.type),
        Appointment.idempotency_key.is_not(None),
        Appointment.event_type_id.is_not(None),
    )
    .order_by(Appointment.updated_at, Appointment.id)
    .limit(bindparam("limit"))
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
FIND_STORED = select(
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


def stale_claim(row: Sequence[Any]) -> StaleClaim:
    """``STALE_CLAIMS``' row as the claim and what settling it needs."""
    start = row[2].astimezone(UTC)
    stored = StoredAppointment(row[0], row[1], start, row[3], row[4], row[5].astimezone(UTC))
    return StaleClaim(stored, row[1], row[6], row[7], row[8], start)


def claim_gone(key: str) -> IntegrityError:
    """The error of a write whose claim is no longer there to fill (or holds another booking)."""
    return IntegrityError(
        "UPDATE appointments", {"key": key}, LookupError(f"no open claim for key {key}")
    )


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread: database work never blocks the event loop."""
    return await anyio.to_thread.run_sync(fn, *args)
