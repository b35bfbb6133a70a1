"""Typed Cal.com errors, parsed from the v2 error envelope.

Each error carries ``status_code`` (``None`` when no HTTP response arrived), which
the circuit breaker reads to classify the outcome: 429 and 5xx are the
dependency's failures, other 4xx are the caller's problem and are ignored.
"""

from __future__ import annotations

from bookingguard.errors import BookingGuardError

__all__ = [
    "CalcomAuthError",
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
]


class CalcomError(BookingGuardError):
    """A Cal.com request failed; ``status_code`` is the HTTP status if one arrived."""

    code = "calcom_error"
    #: True when the request may have taken effect on Cal.com's side (a lost response).
    outcome_unknown = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code


class CalcomValidationError(CalcomError):
    """Cal.com rejected the request body or query (400)."""

    code = "calcom_validation"


class CalcomMissingFields(CalcomValidationError):
    """The event type asks for something the booking does not say; nothing was sent.

    ``fields`` names each one (a booking-field slug, ``phone``, ``email``,
    ``length_minutes``, ``location``) so the agent can ask for exactly that. Its
    ``status_code`` is 422, the class of Cal.com's own refusals: a circuit breaker
    ignores it, a retry does not repeat it.
    """

    code = "calcom_missing_fields"

    def __init__(self, fields: list[str], *, detail: str = "") -> None:
        names = ", ".join(fields)
        super().__init__(
            f"the event type needs {names}" + (f" ({detail})" if detail else ""), status_code=422
        )
        self.fields = list(fields)


class CalcomSlotUnavailableError(CalcomValidationError):
    """The requested slot cannot be booked (taken, outside availability, no host free)."""

    code = "calcom_slot_unavailable"


class CalcomAuthError(CalcomError):
    """The API key is missing, wrong or lacks permission (401/403)."""

    code = "calcom_auth"


class CalcomNotFoundError(CalcomError):
    """The booking (or route) does not exist (404)."""

    code = "calcom_not_found"


class CalcomRateLimitedError(CalcomError):
    """Too many requests (429); the X-RateLimit-* headers say when to come back."""

    code = "calcom_rate_limited"

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        error_code: str | None = None,
        retry_after: float | None = None,
        limit: int | None = None,
        remaining: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, error_code=error_code)
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining


class CalcomServerError(CalcomError):
    """Cal.com failed (5xx): the request may or may not have taken effect."""

    code = "calcom_server"
    outcome_unknown = True


class CalcomProtocolError(CalcomError):
    """Cal.com answered something that is not its documented envelope."""

    code = "calcom_protocol"
    outcome_unknown = True


class CalcomTimeoutError(CalcomError, TimeoutError):
    """No answer in time. ``outcome_unknown`` is False only when the connection never opened."""

    code = "calcom_timeout"

    def __init__(self, message: str, *, outcome_unknown: bool) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class CalcomConnectionError(CalcomError, ConnectionError):
    """The connection failed or dropped; unknown outcome if the request had been sent."""

    code = "calcom_connection"

    def __init__(self, message: str, *, outcome_unknown: bool) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
