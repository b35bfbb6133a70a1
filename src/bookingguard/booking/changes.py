"""What the agent does around a booking: free slots, moving and cancelling the call's appointment.

Each Cal.com call runs under the event type's circuit. Moving or cancelling acts on
the call's latest appointment; asked again (Retell retries), the same request finds
it already moved or cancelled and answers the same without calling Cal.com again.

A move or cancellation that fails is answered "a member of our team will call you
back", so it is written down first (``FailureRecorder.change_failed``: a review item
saying what the caller wanted, in the database or else the spool). A slot taken meanwhile
is the caller's to choose again, not a callback.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from bookingguard.booking.failures import FailureRecorder
from bookingguard.booking.guarded_calcom import GuardedCalcom, is_transient
from bookingguard.booking.key_locks import KeyLocks
from bookingguard.booking.store import BookingStore, CallAppointment, NewAppointment
from bookingguard.booking.types import BookingOutcome, BookingResult
from bookingguard.calcom import CalcomError, CalcomSlotUnavailableError, Slot, format_utc
from bookingguard.resilience import CircuitOpenError

__all__ = ["AppointmentChanges"]

log = logging.getLogger(__name__)

#: How far ahead ``availability`` looks for free slots.
AVAILABILITY_SPAN = timedelta(days=14)
_CANCEL_REASON = "Cancelled by the caller on the phone"
_RESCHEDULE_REASON = "Moved by the caller on the phone"
#: How many moves a cancellation follows from the booking we hold to the live one.
_MAX_MOVES_FOLLOWED = 5


def _failure(exc: Exception) -> BookingResult:
    """The result of a Cal.com call that failed."""
    if isinstance(exc, CalcomSlotUnavailableError):
        return BookingResult.SLOT_UNAVAILABLE
    if isinstance(exc, CircuitOpenError):
        return BookingResult.CIRCUIT_OPEN
    if is_transient(exc):
        return BookingResult.CALCOM_UNAVAILABLE
    if isinstance(exc, CalcomError):
        return BookingResult.CALCOM_REJECTED
    return BookingResult.INTERNAL_ERROR


def _reschedule_key(retell_call_id: str, uid: str | None, start: datetime) -> str:
    text = f"{retell_call_id}|{uid}|{format_utc(start)}|reschedule"
    return "bg1r-" + hashlib.sha256(text.encode()).hexdigest()[:39]


class AppointmentChanges:
    """Free slots, rescheduling and cancelling, for the agent's functions."""

    def __init__(
        self,
        *,
        store: BookingStore,
        calcom: GuardedCalcom,
        failures: FailureRecorder,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._calcom = calcom
        self._failures = failures
        self._clock = clock
        self._locks = KeyLocks()

    async def availability(
        self, event_type_id: int, *, time_zone: str, after: datetime | None = None
    ) -> list[Slot]:
        """Free slots of the event type from ``after`` (else now), earliest first, in
        ``time_zone``; raises what the guarded Cal.com call raises."""
        now = self._clock()
        start = max(after, now) if after is not None else now
        return await self._calcom.slots(
            event_type_id, start=start, end=start + AVAILABILITY_SPAN, time_zone=time_zone
        )

    async def reschedule(self, retell_call_id: str, *, start: datetime) -> BookingOutcome:
        """Move the call's live appointment to ``start``: afterwards the new one is the call's
        live appointment, the old one ``rescheduled``."""
        async with self._locks.hold(retell_call_id):
            try:
                return await self._reschedule(retell_call_id, start)
            except Exception as exc:
                log.exception("reschedule for call %s failed unexpectedly", retell_call_id)
                return await self._failed(
                    "reschedule", retell_call_id, None, BookingResult.INTERNAL_ERROR, exc, start
                )

    async def _reschedule(self, retell_call_id: str, start: datetime) -> BookingOutcome:
        current = await self._store.latest_appointment(retell_call_id)
        if current is None or current.status == "cancelled":
            return BookingOutcome(BookingResult.NO_APPOINTMENT)
        if current.start == start:
            return self._changed(BookingResult.RESCHEDULED, current)
        uid = current.calcom_booking_uid or ""
        try:
            moved = await self._calcom.reschedule(
                uid, event_type_id=current.event_type_id, start=start, reason=_RESCHEDULE_REASON
            )
        except Exception as exc:
            result = _failure(exc)
            found = None
            if result not in (BookingResult.CIRCUIT_OPEN, BookingResult.SLOT_UNAVAILABLE):
                # A lost answer may have moved it, and a retry of a move that happened is
                # refused (the old booking is cancelled): ask Cal.com where it went.
                found = await self._calcom.rescheduled_to(uid, start)
            if found is None:
                log.warning("reschedule for call %s failed", retell_call_id, exc_info=True)
                return await self._failed("reschedule", retell_call_id, current, result, exc, start)
            moved = found
        new = NewAppointment(
            call_id=current.call_id,
            event_type_id=moved.event_type_id or current.event_type_id,
            calcom_v2_booking_id=moved.id,
            calcom_booking_uid=moved.uid,
            starts_at=moved.start,
            ends_at=moved.end,
            idempotency_key=_reschedule_key(retell_call_id, current.calcom_booking_uid, start),
            now=self._clock(),
            status="pending" if moved.is_pending else "booked",
        )
        moved_outcome = BookingOutcome(
            BookingResult.RESCHEDULED,
            call_id=current.call_id,
            start=moved.start,
            calcom_booking_uid=moved.uid,
        )
        try:
            appointment_id = await self._store.reschedule_appointment(current.appointment_id, new)
        except SQLAlchemyError:
            # Cal.com moved it, as the caller is told: the move is written down (the
            # spool while the database is down) and written once it answers.
            log.error("local write of rescheduled %s failed", moved.uid, exc_info=True)
            await self._failures.reschedule_unrecorded(
                retell_call_id, old_appointment_id=current.appointment_id, moved=new
            )
            return moved_outcome
        return replace(moved_outcome, appointment_id=appointment_id)

    async def cancel(self, retell_call_id: str) -> BookingOutcome:
        """Cancel the call's live appointment on Cal.com, then mark it ``cancelled`` (the
        database unlinks the call)."""
        async with self._locks.hold(retell_call_id):
            try:
                return await self._cancel(retell_call_id)
            except Exception as exc:
                log.exception("cancel for call %s failed unexpectedly", retell_call_id)
                return await self._failed(
                    "cancel", retell_call_id, None, BookingResult.INTERNAL_ERROR, exc, None
                )

    async def _cancel(self, retell_call_id: str) -> BookingOutcome:
        current = await self._store.latest_appointment(retell_call_id)
        if current is None:
            return BookingOutcome(BookingResult.NO_APPOINTMENT)
        if current.status == "cancelled":
            return self._changed(BookingResult.CANCELLED, current)
        uid = current.calcom_booking_uid or ""
        try:
            # A booking a move replaced is cancelled already: what the caller wants
            # cancelled is the one it moved to (a move whose answer we lost).
            for _ in range(_MAX_MOVES_FOLLOWED):
                cancelled = await self._calcom.cancel_uid(
                    uid, event_type_id=current.event_type_id, reason=_CANCEL_REASON
                )
                if cancelled is None or cancelled.rescheduled_to_uid is None:
                    break
                uid = cancelled.rescheduled_to_uid
        except Exception as exc:
            log.warning("cancel for call %s failed", retell_call_id, exc_info=True)
            return await self._failed("cancel", retell_call_id, current, _failure(exc), exc, None)
        try:
            await self._store.cancel_appointment(current.appointment_id, self._clock())
        except SQLAlchemyError:
            # Cancelled on Cal.com, as the caller is told: the cancellation is written
            # down (the spool while the database is down) and written once it answers.
            log.error(
                "local write of cancelled %s failed", current.calcom_booking_uid, exc_info=True
            )
            await self._failures.cancel_unrecorded(
                retell_call_id,
                call_id=current.call_id,
                appointment_id=current.appointment_id,
                calcom_booking_uid=current.calcom_booking_uid,
            )
        return self._changed(BookingResult.CANCELLED, current)

    async def _failed(
        self,
        action: str,
        retell_call_id: str,
        current: CallAppointment | None,
        result: BookingResult,
        exc: Exception,
        start: datetime | None,
    ) -> BookingOutcome:
        """A change that did not happen: written down for a callback (unless the slot was
        taken, which the caller chooses again), then answered."""
        details = self._details(result, exc, current, start)
        call_id = current.call_id if current is not None else None
        if result is not BookingResult.SLOT_UNAVAILABLE:
            await self._failures.change_failed(
                retell_call_id, call_id=call_id, action=action, details=details
            )
        return BookingOutcome(result, call_id=call_id, details=details)

    @staticmethod
    def _details(
        result: BookingResult,
        exc: Exception,
        current: CallAppointment | None,
        start: datetime | None,
    ) -> dict[str, str | int | None]:
        """What the review item tells the human who calls back."""
        details: dict[str, str | int | None] = {
            "result": result.value,
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
        }
        if current is not None:
            details["appointment_id"] = current.appointment_id
            details["calcom_booking_uid"] = current.calcom_booking_uid
            details["appointment_start"] = format_utc(current.start)
        if start is not None:
            details["requested_start"] = format_utc(start)
        return details

    @staticmethod
    def _changed(result: BookingResult, appointment: CallAppointment) -> BookingOutcome:
        return BookingOutcome(
            result,
            call_id=appointment.call_id,
            appointment_id=appointment.appointment_id,
            start=appointment.start,
            calcom_booking_uid=appointment.calcom_booking_uid,
        )
