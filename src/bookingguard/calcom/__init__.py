"""Cal.com v2: the bookings client, its typed errors and webhook parsing (an adapter, no policy)."""

from bookingguard.calcom.client import CalcomClient
from bookingguard.calcom.errors import (
    CalcomAuthError,
    CalcomConnectionError,
    CalcomError,
    CalcomNotFoundError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    CalcomValidationError,
)
from bookingguard.calcom.models import (
    BookingPage,
    CalcomAttendee,
    CalcomBooking,
    NewBooking,
    format_utc,
)
from bookingguard.calcom.webhooks import (
    CalcomWebhook,
    CalcomWebhookPayload,
    calcom_signature,
    verify_calcom_signature,
)

__all__ = [
    "BookingPage",
    "CalcomAttendee",
    "CalcomAuthError",
    "CalcomBooking",
    "CalcomClient",
    "CalcomConnectionError",
    "CalcomError",
    "CalcomNotFoundError",
    "CalcomProtocolError",
    "CalcomRateLimitedError",
    "CalcomServerError",
    "CalcomSlotUnavailableError",
    "CalcomTimeoutError",
    "CalcomValidationError",
    "CalcomWebhook",
    "CalcomWebhookPayload",
    "NewBooking",
    "calcom_signature",
    "format_utc",
    "verify_calcom_signature",
]
