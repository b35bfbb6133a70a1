"""Nothing promised that is not recorded: a failed booking is written down before the answer.

Every answer that tells the caller "we'll call you back" is backed by a
``FailureRecord``: written to the database when it takes it, else to the local spool
(durable when ``write_down`` returns), from where ``SpoolReplayer`` writes it into the
database once it answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import anyio.to_thread

from bookingguard.booking.ports import FailureSpool
from bookingguard.booking.store import BookingStore, NewAppointment
from bookingguard.db.spool import (
    BOOKING_FAILED,
    CANCEL_UNRECORDED,
    CHANGE_FAILED,
    COMPENSATION_FAILED,
    RESCHEDULE_UNRECORDED,
    FailureRecord,
)

__all__ = ["FailureRecorder"]

log = logging.getLogger(__name__)


class FailureRecorder:
    """Writes failure records down: in the database, else in the spool."""

    def __init__(
        self, *, store: BookingStore, spool: FailureSpool, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._spool = spool
        self._clock = clock

    @property
    def spool(self) -> FailureSpool:
        """Where records wait while the database is down."""
        return self._spool

    async def booking_failed(
        self,
        retell_call_id: str,
        *,
        call_id: int | None,
        reason: str,
        details: Mapping[str, Any],
    ) -> int | None:
        """The call flagged ``booking_failed`` with ``reason`` and filed for review."""
        return await self._write(BOOKING_FAILED, retell_call_id, call_id, reason, details)

    async def change_failed(
        self,
        retell_call_id: str,
        *,
        call_id: int | None,
        action: str,
        details: Mapping[str, Any],
    ) -> int | None:
        """The caller's ``action`` (``reschedule``, ``cancel`` or ``availability``) did not
        happen and a call-back was promised: a review item for the call."""
        return await self._write(
            CHANGE_FAILED, retell_call_id, call_id, f"{action}_failed", details
        )

    async def cancel_unrecorded(
        self,
        retell_call_id: str,
        *,
        call_id: int,
        appointment_id: int,
        calcom_booking_uid: str | None,
    ) -> int | None:
        """Cal.com cancelled the appointment and the caller is told so, but the database
        could not take it: the cancellation, to be written once it can."""
        details = {"appointment_id": appointment_id, "calcom_booking_uid": calcom_booking_uid}
        return await self._write(
            CANCEL_UNRECORDED, retell_call_id, call_id, CANCEL_UNRECORDED, details
        )

    async def reschedule_unrecorded(
        self, retell_call_id: str, *, old_appointment_id: int, moved: NewAppointment
    ) -> int | None:
        """Cal.com moved the appointment and the caller is told so, but the database could
        not take it: the move, ``moved`` replacing ``old_appointment_id``, to be written
        once it can."""
        details = {"appointment_id": old_appointment_id, **moved.record_details()}
        return await self._write(
            RESCHEDULE_UNRECORDED, retell_call_id, moved.call_id, RESCHEDULE_UNRECORDED, details
        )

    async def compensation_failed(
        self, retell_call_id: str, *, call_id: int | None, calcom_booking_uid: str, error: str
    ) -> int | None:
        """Cal.com holds a booking we could neither record nor cancel: alert and review."""
        details = {"calcom_booking_uid": calcom_booking_uid, "error": error}
        return await self._write(
            COMPENSATION_FAILED, retell_call_id, call_id, COMPENSATION_FAILED, details
        )

    async def _write(
        self,
        kind: str,
        retell_call_id: str,
        call_id: int | None,
        reason: str,
        details: Mapping[str, Any],
    ) -> int | None:
        """A record of ``kind``, stamped now, written down."""
        record = FailureRecord(
            kind=kind,
            retell_call_id=retell_call_id,
            call_id=call_id,
            reason=reason,
            details=dict(details),
            at=self._clock(),
        )
        return await self.write_down(record)

    async def write_down(self, record: FailureRecord) -> int | None:
        """``record`` in the database (its call's id), else in the spool (None). Never raises.

        Whatever the database raises (unreachable, a value it refuses, a bug) sends the
        record to the spool; only when the spool fails too is the record lost, and then
        it is logged whole, as a last trace.
        """
        try:
            return await self._store.record_failure(record)
        except Exception:
            log.warning(
                "could not write %s record %s of call %r to the database; spooling it",
                record.kind,
                record.record_id,
                record.retell_call_id,
                exc_info=True,
            )
        try:
            await anyio.to_thread.run_sync(self._spool.append, record)
        except Exception:
            log.critical("failure record lost, neither database nor spool took it: %r", record)
            log.critical("the spool's error", exc_info=True)
        return None
