"""``MemoryBookingStore``: the booking store in memory, for tests of code that books.

It keeps what the database guarantees on the booking path: one appointment per
idempotency key (the first claim of a key wins, later ones find it) and per Cal.com
booking (a second raises ``IntegrityError``, as the unique constraints do), a claim
links nothing, a new live appointment links its call, a cancelled last appointment
unlinks it. What a failed booking writes down (rollbacks, failures, compensation
failures) is kept in lists to assert on; a failure record is written once per record
id, as the database keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.store import (
    AppointmentReadBack,
    CallAppointment,
    Claimed,
    FailureRecord,
    NewAppointment,
    NewClaim,
    ReadBack,
    StaleClaim,
    StoredAppointment,
)
from bookingguard.booking.types import BookingResult
from bookingguard.db.models import CLAIM_STATUS, NOT_LIVE_APPOINTMENT_STATUSES
from bookingguard.db.spool import (
    CANCEL_UNRECORDED,
    CHANGE_FAILED,
    COMPENSATION_FAILED,
    RESCHEDULE_UNRECORDED,
)

__all__ = ["MemoryAppointment", "MemoryBookingStore", "StoredCall", "WrittenDown"]

T = TypeVar("T")


@dataclass
class StoredCall:
    """A call's booking flags, as the ``calls`` row holds them."""

    id: int
    retell_call_id: str
    appointment_made: bool = False
    session_outcome: str | None = None
    appointment_link_status: str | None = None
    booking_failed: bool = False
    booking_failure_reason: str | None = None
    requires_manual_processing: bool = False


@dataclass
class MemoryAppointment:
    """An ``appointments`` row's columns the booking path uses."""

    id: int
    call_id: int
    calcom_v2_booking_id: int | None
    calcom_booking_uid: str | None
    starts_at: datetime
    status: str
    idempotency_key: str | None
    created_at: datetime
    event_type_id: int | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class WrittenDown:
    """One record of a failed booking, named like the review item it files; ``alerted``
    when it raises an alert too."""

    kind: str
    call_id: int
    alerted: bool
    details: dict[str, Any] = field(default_factory=dict)


class MemoryBookingStore:
    """A ``BookingStore`` in memory; ``fail_writes`` makes writes to a claim (recording a
    booking in it, cancelling it) and reschedules raise, ``fail_records`` the next failure
    records (a database that is down)."""

    def __init__(self) -> None:
        self.calls: dict[int, StoredCall] = {}
        self.records: list[WrittenDown] = []
        self.fail_writes: Exception | None = None
        self.fail_records: Exception | None = None
        self._written_record_ids: set[str] = set()
        self._appointments: dict[int, MemoryAppointment] = {}
        self._next_id = 0

    @property
    def appointments(self) -> list[MemoryAppointment]:
        """The stored appointments, oldest first."""
        return sorted(self._appointments.values(), key=lambda a: a.id)

    def call(self, retell_call_id: str) -> StoredCall:
        """The stored call with Retell id ``retell_call_id``."""
        return next(c for c in self.calls.values() if c.retell_call_id == retell_call_id)

    def add_call(self, retell_call_id: str) -> StoredCall:
        """Store a call, as a Retell webhook would before the booking."""
        call = StoredCall(self._new_id(), retell_call_id)
        self.calls[call.id] = call
        return call

    def add_appointment(
        self, *, call_id: int, calcom_booking_uid: str, starts_at: datetime, now: datetime
    ) -> int:
        """Store an appointment with no idempotency key, as the Cal.com webhook would."""
        appointment = MemoryAppointment(
            self._new_id(), call_id, None, calcom_booking_uid, starts_at, "booked", None, now
        )
        self._appointments[appointment.id] = appointment
        self._link(self.calls[call_id])
        return appointment.id

    async def look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        call = next((c for c in self.calls.values() if c.retell_call_id == retell_call_id), None)
        if call is None:
            call = self.add_call(retell_call_id)
        found = next((a for a in self._appointments.values() if a.idempotency_key == key), None)
        return call.id, _stored(found) if found is not None else None

    async def claim(self, claim: NewClaim) -> Claimed:
        call_id, found = await self.look_up(claim.retell_call_id, claim.key)
        if found is not None:
            return Claimed(call_id, found, False)
        new = MemoryAppointment(
            self._new_id(),
            call_id,
            None,
            None,
            claim.starts_at,
            CLAIM_STATUS,
            claim.key,
            claim.now,
            claim.event_type_id,
            claim.now,
        )
        self._appointments[new.id] = new
        return Claimed(call_id, _stored(new), True)

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        if self.fail_writes is not None:
            raise self.fail_writes
        claim = next(
            (
                a
                for a in self._appointments.values()
                if a.idempotency_key == appointment.idempotency_key and a.status == CLAIM_STATUS
            ),
            None,
        )
        taken = any(
            a.calcom_booking_uid == appointment.calcom_booking_uid
            for a in self._appointments.values()
        )
        if claim is None or taken:
            raise IntegrityError("UPDATE appointments", {}, ValueError("no open claim"))
        claim.calcom_v2_booking_id = appointment.calcom_v2_booking_id
        claim.calcom_booking_uid = appointment.calcom_booking_uid
        claim.starts_at = appointment.starts_at
        claim.status = appointment.status
        claim.created_at = claim.updated_at = appointment.now
        claim.event_type_id = appointment.event_type_id
        self._link(self.calls[appointment.call_id])
        filled = claim.id

        async def read() -> AppointmentReadBack | None:
            return await self.read_back(appointment.call_id, filled)

        return filled, await check(filled, read)

    async def release_claim(self, appointment_id: int) -> None:
        appointment = self._appointments.get(appointment_id)
        if appointment is not None and appointment.status == CLAIM_STATUS:
            del self._appointments[appointment_id]

    async def close_claim(self, appointment_id: int, now: datetime) -> bool:
        appointment = self._appointments.get(appointment_id)
        if appointment is None or appointment.status != CLAIM_STATUS:
            return False
        if self.fail_writes is not None:
            raise self.fail_writes
        appointment.status = "cancelled"
        appointment.updated_at = now
        return True

    async def take_over_claim(self, appointment_id: int, *, seen: datetime, now: datetime) -> bool:
        appointment = self._appointments.get(appointment_id)
        if appointment is None or appointment.status != CLAIM_STATUS:
            return False
        if appointment.updated_at != seen:
            return False
        appointment.updated_at = now
        return True

    async def stale_claims(
        self, *, before: datetime, created_since: datetime, limit: int
    ) -> list[StaleClaim]:
        oldest_change_first = sorted(
            self._appointments.values(), key=lambda a: (a.updated_at or a.created_at, a.id)
        )
        stale = [
            StaleClaim(
                _stored(a),
                a.call_id,
                self.calls[a.call_id].retell_call_id,
                a.idempotency_key,
                a.event_type_id,
                a.starts_at,
            )
            for a in oldest_change_first
            if a.status == CLAIM_STATUS
            and a.created_at >= created_since
            and a.updated_at is not None
            and a.updated_at <= before
            and a.idempotency_key is not None
            and a.event_type_id is not None
        ]
        return stale[:limit]

    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        if appointment_id is not None:
            appointment = self._appointments.get(appointment_id)
        else:
            of_call = [a for a in self._appointments.values() if a.call_id == call_id]
            appointment = max(of_call, key=lambda a: (a.created_at, a.id), default=None)
        if appointment is None:
            return None
        call = self.calls.get(call_id)
        return AppointmentReadBack(
            appointment.id,
            appointment.call_id,
            appointment.calcom_v2_booking_id,
            appointment.calcom_booking_uid,
            appointment.created_at,
            call.id if call is not None else None,
            call.appointment_made if call is not None else None,
            call.session_outcome if call is not None else None,
            call.appointment_link_status if call is not None else None,
        )

    async def claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        found = next(
            (
                a
                for a in self._appointments.values()
                if a.idempotency_key == key or a.calcom_booking_uid == uid
            ),
            None,
        )
        if found is None:
            return None
        if found.idempotency_key is None:
            found.idempotency_key = key
        return _stored(found)

    async def cancel_appointment(self, appointment_id: int, now: datetime) -> None:
        appointment = self._appointments[appointment_id]
        if self.fail_writes is not None and appointment.status == CLAIM_STATUS:
            raise self.fail_writes
        appointment.status = "cancelled"
        live = any(
            a.status not in NOT_LIVE_APPOINTMENT_STATUSES
            for a in self._appointments.values()
            if a.call_id == appointment.call_id
        )
        call = self.calls[appointment.call_id]
        if live or not (
            call.appointment_made
            or call.appointment_link_status == "linked"
            or call.session_outcome == "appointment_booked"
        ):
            return
        call.appointment_made = False
        if call.session_outcome == "appointment_booked":
            call.session_outcome = "appointment_cancelled"
        call.appointment_link_status = "unlinked"

    async def latest_appointment(self, retell_call_id: str) -> CallAppointment | None:
        call = next((c for c in self.calls.values() if c.retell_call_id == retell_call_id), None)
        if call is None:
            return None
        of_call = [
            a
            for a in self._appointments.values()
            if a.call_id == call.id and a.status != CLAIM_STATUS
        ]
        latest = max(of_call, key=lambda a: (a.created_at, a.id), default=None)
        if latest is None:
            return None
        return CallAppointment(
            latest.id,
            call.id,
            latest.event_type_id,
            latest.calcom_booking_uid,
            latest.starts_at,
            latest.status,
        )

    async def reschedule_appointment(self, old_appointment_id: int, new: NewAppointment) -> int:
        if self.fail_writes is not None:
            raise self.fail_writes
        stored = next(
            (
                a
                for a in self._appointments.values()
                if a.calcom_booking_uid == new.calcom_booking_uid
            ),
            None,
        )
        if stored is None:
            stored = self._appointment_of(new)
            self._appointments[stored.id] = stored
        else:
            stored.call_id = new.call_id
            stored.idempotency_key = new.idempotency_key
            stored.status = new.status
        self._link(self.calls[new.call_id])
        self._appointments[old_appointment_id].status = "rescheduled"
        return stored.id

    async def roll_back(
        self, call_id: int, *, reason: str, details: Mapping[str, Any], now: datetime
    ) -> None:
        call = self.calls.get(call_id)
        if call is None:
            raise RollbackFailedError(call_id, "no such call")
        call.appointment_made = False
        call.session_outcome = "creation_failed"
        call.appointment_link_status = "creation_failed"
        call.booking_failed = True
        call.booking_failure_reason = reason
        call.requires_manual_processing = True
        self.records.append(
            WrittenDown(
                "appointment_validation_failed", call_id, True, {"reason": reason, **details}
            )
        )

    async def record_failure(self, record: FailureRecord) -> int:
        if self.fail_records is not None:
            raise self.fail_records
        call = self.calls.get(record.call_id) if record.call_id is not None else None
        if call is None:
            found = (c for c in self.calls.values() if c.retell_call_id == record.retell_call_id)
            call = next(found, None) or self.add_call(record.retell_call_id)
        if record.kind == CANCEL_UNRECORDED:
            appointment = self._appointments.get(int(record.details["appointment_id"]))
            if appointment is not None and appointment.status not in NOT_LIVE_APPOINTMENT_STATUSES:
                await self.cancel_appointment(appointment.id, record.at)
            return call.id
        if record.kind == RESCHEDULE_UNRECORDED:
            self._write_move(call, record)
            return call.id
        if record.record_id in self._written_record_ids:
            return call.id
        if record.reason == BookingResult.PREVIOUSLY_FAILED.value and call.booking_failed:
            return call.id
        self._written_record_ids.add(record.record_id)
        if record.kind == COMPENSATION_FAILED:
            self.records.append(WrittenDown(record.kind, call.id, True, dict(record.details)))
            return call.id
        call.requires_manual_processing = True
        if record.kind == CHANGE_FAILED:
            self.records.append(WrittenDown(record.reason, call.id, False, dict(record.details)))
            return call.id
        call.booking_failed = True
        call.booking_failure_reason = record.reason
        if not call.appointment_made:
            call.session_outcome = "creation_failed"
            call.appointment_link_status = "creation_failed"
        self.records.append(
            WrittenDown(record.kind, call.id, False, {"reason": record.reason, **record.details})
        )
        return call.id

    def _write_move(self, call: StoredCall, record: FailureRecord) -> None:
        """A ``RESCHEDULE_UNRECORDED`` record written, as the SQL store writes it."""
        old = self._appointments.get(int(record.details["appointment_id"]))
        if old is None or old.status in NOT_LIVE_APPOINTMENT_STATUSES:
            return
        moved = NewAppointment.from_record_details(record.details, call_id=call.id, now=record.at)
        uid = moved.calcom_booking_uid
        if not any(a.calcom_booking_uid == uid for a in self._appointments.values()):
            stored = self._appointment_of(moved)
            self._appointments[stored.id] = stored
            self._link(call)
        old.status = "rescheduled"

    async def aclose(self) -> None:
        """Nothing to release."""

    def _appointment_of(self, new: NewAppointment) -> MemoryAppointment:
        """``new`` as a row of its own (not stored yet)."""
        return MemoryAppointment(
            self._new_id(),
            new.call_id,
            new.calcom_v2_booking_id,
            new.calcom_booking_uid,
            new.starts_at,
            new.status,
            new.idempotency_key,
            new.now,
            new.event_type_id,
        )

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _link(call: StoredCall) -> None:
        call.appointment_made = True
        call.session_outcome = "appointment_booked"
        call.appointment_link_status = "linked"
        call.booking_failed = False
        call.booking_failure_reason = None


def _stored(appointment: MemoryAppointment) -> StoredAppointment:
    return StoredAppointment(
        appointment.id,
        appointment.call_id,
        appointment.starts_at,
        appointment.status,
        appointment.calcom_booking_uid,
        appointment.updated_at,
    )
