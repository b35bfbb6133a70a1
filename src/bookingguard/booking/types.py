"""The booking path's values: what the agent asks for, and how the request ended."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bookingguard.calcom import NewBooking, format_utc

__all__ = [
    "IDEMPOTENCY_METADATA_KEY",
    "RETELL_CALL_METADATA_KEY",
    "BookingOutcome",
    "BookingRequest",
    "BookingResult",
    "circuit_key_for",
]

#: Cal.com booking metadata keys: our idempotency key and the Retell call id.
IDEMPOTENCY_METADATA_KEY = "bookingguard_idempotency_key"
RETELL_CALL_METADATA_KEY = "retell_call_id"


def circuit_key_for(event_type_id: int) -> str:
    """The breaker circuit guarding bookings of one Cal.com event type."""
    return f"appointment_booking:event_type:{event_type_id}"


@dataclass(frozen=True, kw_only=True)
class BookingRequest:
    """One booking asked for by the agent during a call."""

    retell_call_id: str
    start: datetime
    event_type_id: int
    name: str
    time_zone: str
    email: str | None = None
    phone: str | None = None
    language: str = "en"
    idempotency_key: str | None = None
    #: Answers to the event type's custom booking fields, by slug.
    responses: Mapping[str, str] = field(default_factory=dict)
    length_minutes: int | None = None

    @property
    def key(self) -> str:
        """The given key, else one derived from the call, the event type and the slot."""
        if self.idempotency_key:
            return self.idempotency_key
        text = f"{self.retell_call_id}|{self.event_type_id}|{format_utc(self.start)}"
        return "bg1-" + hashlib.sha256(text.encode()).hexdigest()[:40]

    def new_booking(self) -> NewBooking:
        """The Cal.com create of this request, our key and the call in its metadata."""
        return NewBooking(
            start=self.start,
            event_type_id=self.event_type_id,
            name=self.name,
            time_zone=self.time_zone,
            email=self.email,
            phone_number=self.phone,
            language=self.language,
            phone=self.phone,
            responses=self.responses,
            length_minutes=self.length_minutes,
            metadata={
                IDEMPOTENCY_METADATA_KEY: self.key,
                RETELL_CALL_METADATA_KEY: self.retell_call_id,
            },
        )


class BookingResult(enum.StrEnum):
    """How a booking request ended; the HTTP layer turns it into a sentence for the caller."""

    BOOKED = "booked"
    ALREADY_BOOKED = "already_booked"
    #: Cal.com holds the booking as a request the host has yet to confirm.
    PENDING = "pending"
    #: The event type needs something the request does not say (``details["missing"]``).
    NEEDS_INFO = "needs_info"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    #: The call has no live appointment to reschedule or cancel.
    NO_APPOINTMENT = "no_appointment"
    SLOT_UNAVAILABLE = "slot_unavailable"
    #: Another request for the same key is still asking Cal.com: ask again in a moment.
    CONFIRMING = "confirming"
    CIRCUIT_OPEN = "circuit_open"
    CALCOM_UNAVAILABLE = "calcom_unavailable"
    CALCOM_REJECTED = "calcom_rejected"
    VALIDATION_FAILED = "validation_failed"
    LOCAL_WRITE_FAILED = "local_write_failed"
    PREVIOUSLY_FAILED = "previously_failed"
    INTERNAL_ERROR = "internal_error"
    #: A claim whose request died, settled in the background: Cal.com holds nothing for
    #: its key, so the claim is released and the call filed (no caller hears this one).
    CLAIM_ABANDONED = "claim_abandoned"


_BOOKED_RESULTS = frozenset({BookingResult.BOOKED, BookingResult.ALREADY_BOOKED})


@dataclass(frozen=True)
class BookingOutcome:
    """The answer to one booking request."""

    result: BookingResult
    call_id: int | None = None
    appointment_id: int | None = None
    start: datetime | None = None
    calcom_booking_uid: str | None = None
    retry_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def booked(self) -> bool:
        return self.result in _BOOKED_RESULTS

    @property
    def missing(self) -> list[str]:
        """What the agent has to ask the caller for (``NEEDS_INFO``)."""
        return [str(name) for name in self.details.get("missing", ())]
