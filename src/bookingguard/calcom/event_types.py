"""Cal.com v2 event types (API version 2024-06-14): what a booking request must say.

Only the parts that shape a create request are read: the lengths, the locations,
the booking fields and whether they are required, the confirmation policy and the
minimum notice. An event type whose SMS reminders go to the attendee carries a
required phone field with the slug ``attendeePhoneNumber``; Cal.com fills it from
``attendee.phoneNumber``.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SMS_PHONE_FIELD", "BookingField", "ConfirmationPolicy", "EventType"]

#: The booking field Cal.com adds (required) when the event type sends SMS to the attendee.
SMS_PHONE_FIELD = "attendeePhoneNumber"
#: Default fields answered by the attendee object or the request's top level, not by slug.
_ANSWERED_ELSEWHERE = frozenset(
    {"name", "email", "location", "guests", "rescheduleReason", "title", "notes", SMS_PHONE_FIELD}
)
_NOTICE_UNITS = {"minutes": 1, "hours": 60, "days": 1440}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class BookingField(_Model):
    """One field of the booking form."""

    slug: str
    type: str = "text"
    label: str = ""
    required: bool = False
    hidden: bool = False
    is_default: bool = Field(default=False, alias="isDefault")

    @field_validator("required", "hidden", "is_default", mode="before")
    @classmethod
    def _literal_true(cls, value: object) -> bool:
        return value is True

    @property
    def needs_response(self) -> bool:
        """A visible required field that only ``bookingFieldsResponses`` can answer."""
        return self.required and not self.hidden and self.slug not in _ANSWERED_ELSEWHERE


class ConfirmationPolicy(_Model):
    """``always``, or ``time``: confirmation needed when booked within the notice threshold."""

    type: str | None = None
    disabled: bool = False
    notice_threshold: dict[str, object] | None = Field(default=None, alias="noticeThreshold")

    def requires_confirmation(self, *, notice: timedelta) -> bool:
        """Whether a booking made ``notice`` ahead of its start comes back ``pending``."""
        if self.disabled or self.type is None:
            return False
        if self.type == "always":
            return True
        threshold = self.notice_threshold or {}
        count, unit = threshold.get("count"), threshold.get("unit")
        if not isinstance(count, int | float) or unit not in _NOTICE_UNITS:
            return True
        return notice < timedelta(minutes=float(count) * _NOTICE_UNITS[str(unit)])


class EventType(_Model):
    """An event type as ``GET /v2/event-types/{id}`` (2024-06-14) describes it."""

    id: int
    slug: str = ""
    title: str = ""
    length_minutes: int = Field(alias="lengthInMinutes")
    length_options: tuple[int, ...] = Field(default=(), alias="lengthInMinutesOptions")
    locations: tuple[dict[str, object], ...] = ()
    booking_fields: tuple[BookingField, ...] = Field(default=(), alias="bookingFields")
    disable_guests: bool = Field(default=False, alias="disableGuests")
    minimum_notice_minutes: int = Field(default=0, alias="minimumBookingNotice")
    confirmation_policy: ConfirmationPolicy | None = Field(default=None, alias="confirmationPolicy")

    @field_validator("length_options", mode="before")
    @classmethod
    def _no_options(cls, value: object) -> object:
        return () if value is None else value

    @property
    def location_types(self) -> tuple[str, ...]:
        return tuple(str(location.get("type")) for location in self.locations)

    @property
    def lengths(self) -> tuple[int, ...]:
        """The lengths a booking may have; the default alone unless options are offered."""
        return self.length_options or (self.length_minutes,)

    @property
    def sends_sms_to_attendee(self) -> bool:
        """Whether ``attendee.phoneNumber`` is required (SMS reminders to the attendee)."""
        return any(f.slug == SMS_PHONE_FIELD and f.required for f in self.booking_fields)

    @property
    def email_required(self) -> bool:
        return any(f.slug == "email" and f.required and not f.hidden for f in self.booking_fields)

    @property
    def requires_confirmation(self) -> bool:
        """Whether some bookings come back ``pending`` until the host confirms them."""
        policy = self.confirmation_policy
        return policy is not None and not policy.disabled and policy.type is not None
