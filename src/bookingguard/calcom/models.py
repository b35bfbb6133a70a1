"""Typed views of Cal.com v2 bookings (API version 2024-08-13) and our booking request."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BookingPage",
    "BookingStatus",
    "CalcomAttendee",
    "CalcomBooking",
    "NewBooking",
    "Slot",
    "format_utc",
]


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, the form Cal.com documents."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given where an aware datetime is required")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BookingStatus(enum.StrEnum):
    """A booking's ``status`` in API version 2024-08-13."""

    ACCEPTED = "accepted"
    PENDING = "pending"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class _CalcomModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class CalcomAttendee(_CalcomModel):
    """One attendee as Cal.com reports it."""

    name: str = ""
    email: str | None = None
    time_zone: str | None = Field(default=None, alias="timeZone")
    phone_number: str | None = Field(default=None, alias="phoneNumber")
    language: str | None = None


class CalcomBooking(_CalcomModel):
    """A Cal.com booking: the fields bookingguard reads."""

    id: int
    uid: str
    start: datetime
    end: datetime
    status: str
    event_type_id: int | None = Field(default=None, alias="eventTypeId")
    metadata: dict[str, str] = Field(default_factory=dict)
    attendees: tuple[CalcomAttendee, ...] = ()
    created_at: datetime | None = Field(default=None, alias="createdAt")
    rescheduled_from_uid: str | None = Field(default=None, alias="rescheduledFromUid")
    rescheduled_to_uid: str | None = Field(default=None, alias="rescheduledToUid")

    @field_validator("metadata", mode="before")
    @classmethod
    def _stringify_metadata(cls, value: object) -> dict[str, str]:
        if not isinstance(value, dict):
            return {}
        return {str(key): str(item) for key, item in value.items()}

    @property
    def is_cancelled(self) -> bool:
        return self.status.lower() in ("cancelled", "rejected")

    @property
    def is_pending(self) -> bool:
        """Booked as a request: the host has yet to confirm it."""
        return self.status.lower() == BookingStatus.PENDING


@dataclass(frozen=True)
class Slot:
    """A free slot from ``GET /v2/slots``, in the time zone that was asked for."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class BookingPage:
    """One page of ``GET /v2/bookings`` and whether another follows."""

    bookings: tuple[CalcomBooking, ...]
    total_items: int | None
    has_next_page: bool


@dataclass(frozen=True, kw_only=True)
class NewBooking:
    """What ``POST /v2/bookings`` needs; ``metadata`` carries our idempotency key and call id.

    ``phone`` is the caller's number (the location of an attendee-phone event type and,
    when ``phone_number`` is not given, the number for SMS reminders); ``responses``
    answer custom booking fields by slug; ``length_minutes`` picks one of the event
    type's lengths. The client completes the request from the event type.
    """

    start: datetime
    event_type_id: int
    name: str
    time_zone: str
    email: str | None = None
    phone_number: str | None = None
    language: str = "en"
    metadata: dict[str, str] = field(default_factory=dict)
    phone: str | None = None
    responses: Mapping[str, str] = field(default_factory=dict)
    length_minutes: int | None = None
    guests: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The request body without the event type's requirements (see ``create_request``)."""
        attendee: dict[str, object] = {
            "name": self.name,
            "timeZone": self.time_zone,
            "language": self.language,
        }
        if self.email is not None:
            attendee["email"] = self.email
        if self.phone_number is not None:
            attendee["phoneNumber"] = self.phone_number
        return {
            "start": format_utc(self.start),
            "eventTypeId": self.event_type_id,
            "attendee": attendee,
            "metadata": dict(self.metadata),
        }
