"""Cal.com v2: the bookings client, its typed errors and webhook parsing (an adapter, no policy)."""

from bookingguard.calcom.client import ApiVersions, CalcomClient
from bookingguard.calcom.create_request import create_request
from bookingguard.calcom.errors import (
    CalcomAuthError,
    CalcomConnectionError,
    CalcomError,
    CalcomMissingFields,
    CalcomNotFoundError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    CalcomValidationError,
)
from bookingguard.calcom.event_types import BookingField, ConfirmationPolicy, EventType
from bookingguard.calcom.models import (
    BookingPage,
    BookingStatus,
    CalcomAttendee,
    CalcomBooking,
    NewBooking,
    Slot,
    format_utc,
)
from bookingguard.calcom.webhooks import (
    CalcomWebhook,
    CalcomWebhookPayload,
    calcom_signature,
    verify_calcom_signature,
)

__all__ = [
    "ApiVersions",
    "BookingField",
    "BookingPage",
    "BookingStatus",
    "CalcomAttendee",
    "CalcomAuthError",
    "CalcomBooking",
    "CalcomClient",
    "CalcomConnectionError",
    "CalcomError",
    "CalcomMissingFields",
    "CalcomNotFoundError",
    "CalcomProtocolError",
    "CalcomRateLimitedError",
    "CalcomServerError",
    "CalcomSlotUnavailableError",
    "CalcomTimeoutError",
    "CalcomValidationError",
    "CalcomWebhook",
    "CalcomWebhookPayload",
    "ConfirmationPolicy",
    "EventType",
    "NewBooking",
    "Slot",
    "calcom_signature",
    "create_request",
    "format_utc",
    "verify_calcom_signature",
]
