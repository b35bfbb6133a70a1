"""What the booking path's queries take and give: claims, appointments, read-backs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self

from bookingguard.db.models import CLAIM_STATUS, NOT_LIVE_APPOINTMENT_STATUSES

__all__ = [
    "AppointmentReadBack",
    "CallAppointment",
    "Claimed",
    "NewAppointment",
    "NewClaim",
    "ReadBack",
    "StaleClaim",
    "StoredAppointment",
]


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


@dataclass(frozen=True)
class StaleClaim:
    """A claim unchanged since a given moment, and what settling it needs."""

    claim: StoredAppointment
    call_id: int
    retell_call_id: str
    key: str
    event_type_id: int
    starts_at: datetime


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

    def record_details(self) -> dict[str, Any]:
        """Its fields as a failure record's JSON details (call and time are the record's)."""
        return {
            "calcom_booking_uid": self.calcom_booking_uid,
            "calcom_v2_booking_id": self.calcom_v2_booking_id,
            "event_type_id": self.event_type_id,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "status": self.status,
            "idempotency_key": self.idempotency_key,
        }

    @classmethod
    def from_record_details(
        cls, details: Mapping[str, Any], *, call_id: int, now: datetime
    ) -> Self:
        """The appointment ``record_details`` wrote, for ``call_id`` as of ``now``."""
        return cls(
            call_id=call_id,
            event_type_id=details["event_type_id"],
            calcom_v2_booking_id=details["calcom_v2_booking_id"],
            calcom_booking_uid=str(details["calcom_booking_uid"]),
            starts_at=datetime.fromisoformat(str(details["starts_at"])),
            ends_at=datetime.fromisoformat(str(details["ends_at"])),
            idempotency_key=str(details["idempotency_key"]),
            now=now,
            status=str(details["status"]),
        )


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
