"""Retell: the agent's ``book_appointment`` function and the call lifecycle webhook.

Both are signed with ``x-retell-signature``; the signature is checked on the raw
body before anything is parsed or stored. The booking function never answers
5xx: whatever happens, the agent gets a sentence to say to the caller.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bookingguard.api.bounds import (
    NO_NUL,
    VISIBLE_TEXT,
    EpochMillis,
    Int32Id,
    Moment,
    Text40,
    Text200,
    moment_in_range,
)
from bookingguard.api.deps import ServicesDep
from bookingguard.api.problems import (
    WEBHOOK_ERROR_RESPONSES,
    parse_json,
    validate_body,
)
from bookingguard.api.signature_limits import signature_refusal
from bookingguard.api.signatures import verify_retell_signature
from bookingguard.booking import BookingOutcome, BookingRequest, BookingResult
from bookingguard.booking.calls import CallEvent
from bookingguard.bootstrap import Services

__all__ = ["BookAppointmentArgs", "BookAppointmentResponse", "router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["retell"])

CALL_EVENTS = ("call_started", "call_ended", "call_analyzed")
_EMAIL = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
_PHONE = r"^\+?[0-9][0-9 ()\-.]{3,30}$"


class BookAppointmentArgs(BaseModel):
    """The function's arguments, as the agent fills them."""

    model_config = ConfigDict(extra="ignore")

    start: Moment = Field(description="ISO 8601; without an offset it is read in time_zone")
    event_type_id: Int32Id
    name: str = Field(min_length=1, max_length=200, pattern=VISIBLE_TEXT)
    email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    phone: str | None = Field(default=None, max_length=40, pattern=_PHONE)
    time_zone: str = Field(
        max_length=64,
        pattern=NO_NUL,
        description="IANA time zone of the caller, e.g. Europe/Berlin",
    )

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value

    @model_validator(mode="after")
    def _contact_and_zone(self) -> BookAppointmentArgs:
        if not self.email and not self.phone:
            raise ValueError("email or phone is required")
        if self.start.tzinfo is None:
            self.start = moment_in_range(self.start.replace(tzinfo=ZoneInfo(self.time_zone)))
        return self


class RetellCallInfo(BaseModel):
    """The ``call`` object Retell sends along (only the id is needed)."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(min_length=1, max_length=128, pattern=NO_NUL)


class FunctionCall(BaseModel):
    """Retell's custom-function request: ``{"name", "call", "args"}``."""

    model_config = ConfigDict(extra="ignore")

    name: str
    call: RetellCallInfo
    args: BookAppointmentArgs


class BookAppointmentResponse(BaseModel):
    """What the agent gets back; ``message`` is a sentence to say to the caller."""

    booked: bool
    appointment_id: int | None
    start: str | None
    message: str


class RetellCallAnalysis(BaseModel):
    model_config = ConfigDict(extra="ignore")

    custom_analysis_data: dict[str, Any] | None = None


class RetellCall(BaseModel):
    """The call object of a lifecycle webhook (the fields we keep)."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(min_length=1, max_length=128, pattern=NO_NUL)
    direction: Literal["inbound", "outbound"] | None = None
    from_number: Text40 | None = None
    to_number: Text40 | None = None
    call_status: Text40 | None = None
    start_timestamp: EpochMillis | None = None
    end_timestamp: EpochMillis | None = None
    disconnection_reason: Text200 | None = None
    call_analysis: RetellCallAnalysis | None = None


class RetellWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: Literal["call_started", "call_ended", "call_analyzed"]
    call: RetellCall


def _verify(request: Request, services: Services, body: bytes, signature: str | None) -> None:
    key = services.settings.retell.api_key
    now_ms = int(services.clock().timestamp() * 1000)
    if not verify_retell_signature(
        body,
        signature,
        api_key=key.get_secret_value() if key is not None else "",
        now_ms=now_ms,
        tolerance_ms=services.settings.retell.signature_tolerance_seconds * 1000,
    ):
        raise signature_refusal(request, "missing, malformed, wrong or stale x-retell-signature")


_SORRY = (
    "I'm sorry, I couldn't confirm your booking right now. A member of our team "
    "will call you back shortly to schedule your appointment."
)


def _message(outcome: BookingOutcome | None, time_zone: str) -> str:
    if outcome is None:
        return _SORRY
    if outcome.booked and outcome.start is not None:
        local = outcome.start.astimezone(ZoneInfo(time_zone))
        when = f"{local:%A, %B} {local.day} at {local:%I:%M %p}".replace(" 0", " ")
        return f"You're booked for {when}."
    if outcome.result is BookingResult.SLOT_UNAVAILABLE:
        return "I'm sorry, that time is no longer available. Would you like to pick another time?"
    return _SORRY


@router.post(
    "/retell/functions/book_appointment",
    response_model=BookAppointmentResponse,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="The agent's booking function (Retell custom function)",
)
async def book_appointment(request: Request, services: ServicesDep) -> BookAppointmentResponse:
    body = await request.body()
    _verify(request, services, body, request.headers.get("x-retell-signature"))
    call = validate_body(FunctionCall, parse_json(body))
    args = call.args
    booking = BookingRequest(
        retell_call_id=call.call.call_id,
        start=args.start,
        event_type_id=args.event_type_id,
        name=args.name,
        email=args.email,
        phone=args.phone,
        time_zone=args.time_zone,
    )
    outcome: BookingOutcome | None
    try:
        outcome = await services.booking.book(booking)
    except Exception:
        # The service files what it can; the agent must still get an answer, never a 5xx.
        log.exception("booking for call %s failed unexpectedly", booking.retell_call_id)
        outcome = None
    return BookAppointmentResponse(
        booked=outcome is not None and outcome.booked,
        appointment_id=outcome.appointment_id if outcome is not None and outcome.booked else None,
        start=outcome.start.astimezone(UTC).isoformat()
        if outcome is not None and outcome.booked and outcome.start is not None
        else None,
        message=_message(outcome, args.time_zone),
    )


def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value is not None else None


@router.post(
    "/webhooks/retell",
    status_code=204,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="Retell call lifecycle webhook",
)
async def retell_webhook(request: Request, services: ServicesDep) -> Response:
    body = await request.body()
    _verify(request, services, body, request.headers.get("x-retell-signature"))
    document = parse_json(body)
    event_name = document.get("event") if isinstance(document, dict) else None
    if isinstance(event_name, str) and event_name not in CALL_EVENTS:
        return Response(status_code=204)
    webhook = validate_body(RetellWebhook, document)
    analysis = webhook.call.call_analysis
    custom = (analysis.custom_analysis_data if analysis is not None else None) or {}
    raw_outcome = custom.get(services.settings.retell.outcome_field)
    event = CallEvent(
        event=webhook.event,
        retell_call_id=webhook.call.call_id,
        direction=webhook.call.direction,
        from_number=webhook.call.from_number,
        to_number=webhook.call.to_number,
        call_status=webhook.call.call_status,
        started_at=_ms(webhook.call.start_timestamp),
        ended_at=_ms(webhook.call.end_timestamp),
        analysis_outcome=str(raw_outcome) if raw_outcome is not None else None,
        disconnection_reason=webhook.call.disconnection_reason,
    )

    await services.call_events.record(event)
    return Response(status_code=204)
