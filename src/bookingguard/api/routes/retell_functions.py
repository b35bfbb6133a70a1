"""The agent's functions (Retell custom functions): check availability, book, reschedule, cancel.

Each is signed with ``x-retell-signature`` (checked on the raw body before anything
is parsed), accepts Retell's full body or an ``args_at_root`` one, and always answers
200 with a ``message`` the agent can say: a missing or malformed argument is a
question with the fields in ``missing``, a failure a sentence, never a 4xx or 5xx.
Each is idempotent: Retell's retries book, move or cancel nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from bookingguard.api.deps import ServicesDep
from bookingguard.api.problems import WEBHOOK_ERROR_RESPONSES, parse_json
from bookingguard.api.routes.retell_args import (
    MAX_EVENT_TYPE_ID,
    ArgumentProblem,
    BookAppointmentArgs,
    CancelAppointmentArgs,
    CheckAvailabilityArgs,
    FunctionEnvelope,
    M,
    RescheduleAppointmentArgs,
    ask_for,
    envelope_of,
    parse_args,
)
from bookingguard.api.routes.retell_words import (
    CANT_BOOK_THAT,
    booking_sentence,
    cancel_sentence,
    reschedule_sentence,
    slots_sentence,
)
from bookingguard.api.signature_limits import signature_refusal
from bookingguard.api.signatures import verify_retell_signature
from bookingguard.booking import BookingOutcome, BookingRequest, BookingResult
from bookingguard.bootstrap import Services

__all__ = [
    "BookAppointmentResponse",
    "CancelAppointmentResponse",
    "CheckAvailabilityResponse",
    "RescheduleAppointmentResponse",
    "router",
    "verify_retell",
]

log = logging.getLogger(__name__)
router = APIRouter(tags=["retell"])

#: How many free slots ``check_availability`` offers at a time.
SLOTS_OFFERED = 3
_PAST = ArgumentProblem(
    ["start"], "That time has already passed. Which day and time in the future would you like?"
)
_NO_CONTACT = ArgumentProblem(
    ["email", "phone"], "May I have an e-mail address or a phone number for the booking?"
)
_NO_CALENDAR = (
    "I'm sorry, I can't look at the calendar right now. A member of our team will call "
    "you back shortly."
)
#: Without a call to file, nobody can be promised a call-back.
_NO_CALENDAR_TRY_LATER = (
    "I'm sorry, I can't look at the calendar right now. Please try again in a few minutes."
)


class FunctionAnswer(BaseModel):
    """Every function's answer: a sentence to say, and the arguments to ask for again."""

    message: str = Field(description="A sentence the agent can say to the caller")
    missing: list[str] = Field(
        default_factory=list, description="Arguments missing or malformed, to ask again"
    )


class CheckAvailabilityResponse(FunctionAnswer):
    available: bool
    slots: list[str] = Field(
        default_factory=list, description="The slots offered, ISO 8601 in the caller's zone"
    )


class BookAppointmentResponse(FunctionAnswer):
    booked: bool
    pending: bool = Field(default=False, description="Requested; the host has yet to confirm")
    appointment_id: int | None = None
    start: str | None = None


class RescheduleAppointmentResponse(FunctionAnswer):
    rescheduled: bool
    pending: bool = False
    appointment_id: int | None = None
    start: str | None = None


class CancelAppointmentResponse(FunctionAnswer):
    cancelled: bool
    appointment_id: int | None = None


def verify_retell(request: Request, services: Services, body: bytes, signature: str | None) -> None:
    """A 401 (429 past the client's limit) unless ``signature`` is Retell's fresh signature."""
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


@dataclass(frozen=True)
class _Invocation(Generic[M]):
    """A signed function call: Retell's envelope, its arguments, and the call they are for."""

    envelope: FunctionEnvelope
    args: M
    call_id: str | None


async def _invocation(
    request: Request, services: Services, model: type[M]
) -> _Invocation[M] | ArgumentProblem:
    """The signed body's arguments as ``model`` (a 401 unless signed), or the question to ask."""
    body = await request.body()
    verify_retell(request, services, body, request.headers.get("x-retell-signature"))
    envelope = envelope_of(parse_json(body))
    args = parse_args(model, envelope.args)
    if isinstance(args, ArgumentProblem):
        return args
    return _Invocation(envelope, args, envelope.call_id or args.call_id)


async def _call_invocation(
    request: Request, services: Services, model: type[M]
) -> tuple[_Invocation[M], str] | ArgumentProblem:
    """``_invocation`` for a function that acts on the call: the call's id is required."""
    invocation = await _invocation(request, services, model)
    if isinstance(invocation, ArgumentProblem):
        return invocation
    if invocation.call_id is None:
        return ask_for(["call_id"])
    return invocation, invocation.call_id


def _url_event_types(request: Request) -> list[int]:
    """The function URL's ``event_type_id`` values (the operator's, not the model's)."""
    ids = [
        int(value)
        for value in request.query_params.getlist("event_type_id")
        if value.isdigit() and 0 < int(value) <= MAX_EVENT_TYPE_ID
    ]
    return list(dict.fromkeys(ids))


def _event_type(
    services: Services, request: Request, *, agent_id: str | None, requested: int | None
) -> int | ArgumentProblem:
    """The event type to use: the model's only inside the allowed set, else its first."""
    settings = services.settings.retell
    allowed = _url_event_types(request)
    if not allowed and agent_id is not None:
        allowed = list(settings.agent_event_types.get(agent_id, ()))
    if not allowed and settings.default_event_type_id is not None:
        allowed = [settings.default_event_type_id]
    if not allowed:
        return requested if requested is not None else ask_for(["event_type_id"])
    if requested is None:
        return allowed[0]
    return requested if requested in allowed else ArgumentProblem([], CANT_BOOK_THAT)


def _utc(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


@router.post(
    "/retell/functions/check_availability",
    response_model=CheckAvailabilityResponse,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="The agent's availability function (Retell custom function)",
)
async def check_availability(request: Request, services: ServicesDep) -> CheckAvailabilityResponse:
    invocation = await _invocation(request, services, CheckAvailabilityArgs)
    if isinstance(invocation, ArgumentProblem):
        return CheckAvailabilityResponse(available=False, **vars(invocation))
    args = invocation.args
    event_type = _event_type(
        services, request, agent_id=invocation.envelope.agent_id, requested=args.event_type_id
    )
    if isinstance(event_type, ArgumentProblem):
        return CheckAvailabilityResponse(available=False, **vars(event_type))
    try:
        slots = await services.booking.changes.availability(
            event_type, time_zone=args.time_zone, after=args.after
        )
    except Exception as exc:
        log.warning("availability of event type %s failed", event_type, exc_info=True)
        if invocation.call_id is None:
            return CheckAvailabilityResponse(available=False, message=_NO_CALENDAR_TRY_LATER)
        # The call-back promised is written down first (the database, else the spool).
        await services.booking.failures.change_failed(
            invocation.call_id,
            call_id=None,
            action="availability",
            details={
                "event_type_id": event_type,
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
            },
        )
        return CheckAvailabilityResponse(available=False, message=_NO_CALENDAR)
    offered = slots[:SLOTS_OFFERED]
    return CheckAvailabilityResponse(
        available=bool(offered),
        slots=[slot.start.isoformat() for slot in offered],
        message=slots_sentence(offered, args.time_zone),
    )


@router.post(
    "/retell/functions/book_appointment",
    response_model=BookAppointmentResponse,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="The agent's booking function (Retell custom function)",
)
async def book_appointment(request: Request, services: ServicesDep) -> BookAppointmentResponse:
    parsed = await _call_invocation(request, services, BookAppointmentArgs)
    if isinstance(parsed, ArgumentProblem):
        return BookAppointmentResponse(booked=False, **vars(parsed))
    invocation, call_id = parsed
    args = invocation.args
    if not args.email and not args.phone:
        return BookAppointmentResponse(booked=False, **vars(_NO_CONTACT))
    if args.start <= services.clock():
        return BookAppointmentResponse(booked=False, **vars(_PAST))
    event_type = _event_type(
        services, request, agent_id=invocation.envelope.agent_id, requested=args.event_type_id
    )
    if isinstance(event_type, ArgumentProblem):
        return BookAppointmentResponse(booked=False, **vars(event_type))
    booking = BookingRequest(
        retell_call_id=call_id,
        start=args.start,
        event_type_id=event_type,
        name=args.name,
        email=args.email,
        phone=args.phone,
        time_zone=args.time_zone,
        responses=args.responses,
        length_minutes=args.length_minutes,
    )
    outcome: BookingOutcome | None
    try:
        outcome = await services.booking.book(booking)
    except Exception:
        # The service files what it can; the agent must still get an answer, never a 5xx.
        log.exception("booking for call %s failed unexpectedly", call_id)
        outcome = None
    if outcome is not None and outcome.result is BookingResult.NEEDS_INFO:
        return BookAppointmentResponse(booked=False, **vars(ask_for(outcome.missing)))
    shown = outcome is not None and (outcome.booked or outcome.result is BookingResult.PENDING)
    return BookAppointmentResponse(
        booked=outcome is not None and outcome.booked,
        pending=outcome is not None and outcome.result is BookingResult.PENDING,
        appointment_id=outcome.appointment_id if outcome is not None and shown else None,
        start=_utc(outcome.start) if outcome is not None and shown else None,
        message=booking_sentence(outcome, args.time_zone),
    )


@router.post(
    "/retell/functions/reschedule_appointment",
    response_model=RescheduleAppointmentResponse,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="The agent's reschedule function (Retell custom function)",
)
async def reschedule_appointment(
    request: Request, services: ServicesDep
) -> RescheduleAppointmentResponse:
    parsed = await _call_invocation(request, services, RescheduleAppointmentArgs)
    if isinstance(parsed, ArgumentProblem):
        return RescheduleAppointmentResponse(rescheduled=False, **vars(parsed))
    invocation, call_id = parsed
    args = invocation.args
    if args.start <= services.clock():
        return RescheduleAppointmentResponse(rescheduled=False, **vars(_PAST))
    try:
        outcome = await services.booking.changes.reschedule(call_id, start=args.start)
    except Exception as exc:
        log.exception("reschedule for call %s failed unexpectedly", call_id)
        outcome = BookingOutcome(BookingResult.INTERNAL_ERROR, details={"error": str(exc)})
    done = outcome.result is BookingResult.RESCHEDULED
    return RescheduleAppointmentResponse(
        rescheduled=done,
        appointment_id=outcome.appointment_id if done else None,
        start=_utc(outcome.start) if done else None,
        message=reschedule_sentence(outcome, args.time_zone),
    )


@router.post(
    "/retell/functions/cancel_appointment",
    response_model=CancelAppointmentResponse,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="The agent's cancel function (Retell custom function)",
)
async def cancel_appointment(request: Request, services: ServicesDep) -> CancelAppointmentResponse:
    parsed = await _call_invocation(request, services, CancelAppointmentArgs)
    if isinstance(parsed, ArgumentProblem):
        return CancelAppointmentResponse(cancelled=False, **vars(parsed))
    invocation, call_id = parsed
    args = invocation.args
    try:
        outcome = await services.booking.changes.cancel(call_id)
    except Exception as exc:
        log.exception("cancel for call %s failed unexpectedly", call_id)
        outcome = BookingOutcome(BookingResult.INTERNAL_ERROR, details={"error": str(exc)})
    done = outcome.result is BookingResult.CANCELLED
    return CancelAppointmentResponse(
        cancelled=done,
        appointment_id=outcome.appointment_id if done else None,
        message=cancel_sentence(outcome, args.time_zone),
    )
