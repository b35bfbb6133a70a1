"""The ``POST /v2/bookings`` body for a booking, completed from its event type.

Everything the event type requires is checked before the request is built, and
every gap is named at once in ``CalcomMissingFields``.
"""

from __future__ import annotations

from bookingguard.calcom.errors import CalcomMissingFields
from bookingguard.calcom.event_types import EventType
from bookingguard.calcom.models import NewBooking

__all__ = ["create_request"]

_ATTENDEE_PHONE = "attendeePhone"
#: Locations the attendee must describe; we can only give a phone number.
_ATTENDEE_DESCRIBED = frozenset({"attendeeAddress", "attendeeDefined"})


def create_request(booking: NewBooking, event_type: EventType) -> dict[str, object]:
    """The body for ``booking``; ``CalcomMissingFields`` if the event type needs more."""
    missing: list[str] = []
    body = booking.to_json()
    attendee = body["attendee"]
    assert isinstance(attendee, dict)
    phone = booking.phone or booking.phone_number

    location = _location(event_type, phone=booking.phone)
    if location is not None:
        body["location"] = location
    elif _needs_location(event_type):
        missing.append("phone" if _ATTENDEE_PHONE in event_type.location_types else "location")

    if event_type.sends_sms_to_attendee:
        if phone is None:
            missing.append("phone")
        else:
            attendee["phoneNumber"] = phone
    if event_type.email_required and booking.email is None:
        missing.append("email")

    responses = {
        f.slug: booking.responses[f.slug]
        for f in event_type.booking_fields
        if f.slug in booking.responses
    }
    missing.extend(
        f.slug
        for f in event_type.booking_fields
        if f.needs_response and not str(booking.responses.get(f.slug, "")).strip()
    )
    if responses:
        body["bookingFieldsResponses"] = responses

    if booking.length_minutes is not None:
        if booking.length_minutes not in event_type.lengths:
            missing.append("length_minutes")
        elif len(event_type.lengths) > 1:
            body["lengthInMinutes"] = booking.length_minutes
    if booking.guests and not event_type.disable_guests:
        body["guests"] = list(booking.guests)

    if missing:
        lengths = ", ".join(str(n) for n in event_type.lengths)
        detail = f"lengths offered: {lengths}" if "length_minutes" in missing else ""
        raise CalcomMissingFields(list(dict.fromkeys(missing)), detail=detail)
    return body


def _location(event_type: EventType, *, phone: str | None) -> dict[str, object] | None:
    """The attendee's phone where the event type takes one; else Cal.com picks its own."""
    if _ATTENDEE_PHONE in event_type.location_types and phone is not None:
        return {"type": _ATTENDEE_PHONE, "phone": phone}
    return None


def _needs_location(event_type: EventType) -> bool:
    """Every location offered is one the attendee has to give."""
    types = set(event_type.location_types)
    return bool(types) and types <= _ATTENDEE_DESCRIBED | {_ATTENDEE_PHONE}
