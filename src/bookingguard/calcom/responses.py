"""Reading Cal.com's answers: the success envelope, bookings, typed errors, rate-limit headers."""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import ValidationError

from bookingguard.calcom.errors import (
    CalcomAuthError,
    CalcomError,
    CalcomNotFoundError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomValidationError,
)
from bookingguard.calcom.models import CalcomBooking

__all__ = ["error_for", "parse_booking", "success_body"]

_SLOT_UNAVAILABLE = re.compile(
    r"not available|no_available_users|already has booking|slot|unavailable", re.IGNORECASE
)
#: A reset header above this is an absolute Unix time, below it a number of seconds.
_EPOCH_THRESHOLD = 1_000_000_000


def error_for(response: httpx.Response, *, now: float) -> CalcomError:
    """The typed error for an error answer (``now``: the Unix time, for a reset header)."""
    status = response.status_code
    error_code, message = _error_details(response)
    text = f"Cal.com {response.request.method} {response.request.url.path}: {status} {message}"
    if status == 429:
        return CalcomRateLimitedError(
            text,
            error_code=error_code,
            retry_after=_retry_after(response.headers, now=now),
            limit=_rate_header(response.headers, "x-ratelimit-limit"),
            remaining=_rate_header(response.headers, "x-ratelimit-remaining"),
        )
    if status >= 500:
        return CalcomServerError(text, status_code=status, error_code=error_code)
    if status in (401, 403):
        return CalcomAuthError(text, status_code=status, error_code=error_code)
    if status == 404:
        return CalcomNotFoundError(text, status_code=status, error_code=error_code)
    if status == 409 or (status == 400 and _SLOT_UNAVAILABLE.search(message)):
        return CalcomSlotUnavailableError(text, status_code=status, error_code=error_code)
    return CalcomValidationError(text, status_code=status, error_code=error_code)


def success_body(response: httpx.Response) -> dict[str, Any]:
    """The success envelope of an answer, or ``CalcomProtocolError``."""
    try:
        body = response.json()
    except ValueError as exc:
        raise CalcomProtocolError(
            "Cal.com answered with something other than JSON", status_code=response.status_code
        ) from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        raise CalcomProtocolError(
            "Cal.com answered without a success envelope", status_code=response.status_code
        )
    return body


def parse_booking(data: object) -> CalcomBooking:
    """A booking from an answer's ``data``, or ``CalcomProtocolError``."""
    try:
        return CalcomBooking.model_validate(data)
    except ValidationError as exc:
        raise CalcomProtocolError(f"unexpected Cal.com booking shape: {exc}") from exc


def _error_details(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase or "error"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else str(message or "error"),
        )
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return None, str(body["message"])
    return None, response.reason_phrase or "error"


def _header_with_prefix(headers: httpx.Headers, prefix: str) -> str | None:
    """``X-RateLimit-Reset`` or Cal.com's named form ``X-RateLimit-Reset-Default``."""
    if prefix in headers:
        return headers[prefix]
    for name, value in headers.items():
        if name.lower().startswith(prefix + "-"):
            return value
    return None


def _rate_header(headers: httpx.Headers, prefix: str) -> int | None:
    raw = _header_with_prefix(headers, prefix)
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


def _retry_after(headers: httpx.Headers, *, now: float) -> float | None:
    """Seconds to wait: ``Retry-After``, else the rate-limit reset (seconds or a Unix time)."""
    for raw in (headers.get("retry-after"), _header_with_prefix(headers, "x-ratelimit-reset")):
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if value > _EPOCH_THRESHOLD:
            value -= now
        return max(value, 0.0)
    return None
