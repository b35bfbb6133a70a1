"""The agent's function arguments: their models, and the model's mistakes put into words.

Retell sends either its full body (``{"name", "call", "args"}``) or, for a tool with
``args_at_root``, the arguments alone; then the call is named by a ``call_id``
argument the agent fills from Retell's ``{{call_id}}`` dynamic variable. Arguments
that are missing or malformed are never an HTTP error: they become a question the
agent asks the caller, with the fields named in ``missing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bookingguard.api.bounds import MAX_INT32, NO_NUL, VISIBLE_TEXT, Moment, moment_in_range

__all__ = [
    "MAX_EVENT_TYPE_ID",
    "ArgumentProblem",
    "BookAppointmentArgs",
    "CancelAppointmentArgs",
    "CheckAvailabilityArgs",
    "FunctionEnvelope",
    "RescheduleAppointmentArgs",
    "ask_for",
    "envelope_of",
    "parse_args",
]

#: Cal.com event type ids are positive 32-bit integers.
MAX_EVENT_TYPE_ID = MAX_INT32
_EMAIL = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
_PHONE = r"^\+?[0-9][0-9 ()\-.]{3,30}$"

EventTypeId = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_EVENT_TYPE_ID,
        description="The Cal.com event type; leave it out to use the agent's default",
    ),
]


class _Args(BaseModel):
    """What every function takes: the call (with ``args_at_root``) and the caller's zone."""

    model_config = ConfigDict(extra="ignore")

    call_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=NO_NUL,
        description="Retell's {{call_id}}; needed when the tool sends its arguments at root",
    )
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


class _StartArgs(_Args):
    start: Moment = Field(description="ISO 8601; without an offset it is read in time_zone")

    @model_validator(mode="after")
    def _in_zone(self) -> _StartArgs:
        if self.start.tzinfo is None:
            self.start = moment_in_range(self.start.replace(tzinfo=ZoneInfo(self.time_zone)))
        return self


class CheckAvailabilityArgs(_Args):
    """``check_availability``: the first free slots from ``after`` (else now)."""

    event_type_id: EventTypeId | None = None
    after: Moment | None = Field(
        default=None,
        description="ISO 8601: the earliest start the caller would like; now when left out",
    )

    @model_validator(mode="after")
    def _in_zone(self) -> CheckAvailabilityArgs:
        if self.after is not None and self.after.tzinfo is None:
            self.after = moment_in_range(self.after.replace(tzinfo=ZoneInfo(self.time_zone)))
        return self


class BookAppointmentArgs(_StartArgs):
    """``book_appointment``: the slot, who books it, and how to reach them."""

    event_type_id: EventTypeId | None = None
    name: str = Field(
        min_length=1, max_length=200, pattern=VISIBLE_TEXT, description="The caller's name"
    )
    email: str | None = Field(
        default=None, max_length=320, pattern=_EMAIL, description="The caller's e-mail address"
    )
    phone: str | None = Field(
        default=None, max_length=40, pattern=_PHONE, description="The caller's phone number"
    )
    responses: dict[
        Annotated[str, Field(max_length=100, pattern=NO_NUL)],
        Annotated[str, Field(max_length=1000, pattern=NO_NUL)],
    ] = Field(
        default_factory=dict,
        description="Answers to the event type's own booking questions, by field name",
    )
    length_minutes: int | None = Field(
        default=None, gt=0, le=1440, description="One of the event type's lengths"
    )


class RescheduleAppointmentArgs(_StartArgs):
    """``reschedule_appointment``: the new start of the call's appointment."""


class CancelAppointmentArgs(_Args):
    """``cancel_appointment``: the call's appointment; ``time_zone`` only words the answer."""

    time_zone: str = Field(
        default="UTC",
        max_length=64,
        pattern=NO_NUL,
        description="IANA time zone of the caller, e.g. Europe/Berlin",
    )


@dataclass(frozen=True)
class FunctionEnvelope:
    """A function request split into the call it belongs to and the arguments."""

    call_id: str | None
    agent_id: str | None
    args: dict[str, Any]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def envelope_of(document: object) -> FunctionEnvelope:
    """Retell's full body (``call`` and ``args``), else the arguments at root."""
    if not isinstance(document, dict):
        return FunctionEnvelope(None, None, {})
    call = document.get("call")
    if isinstance(call, dict):
        args = document.get("args")
        return FunctionEnvelope(
            _text(call.get("call_id")),
            _text(call.get("agent_id")),
            args if isinstance(args, dict) else {},
        )
    return FunctionEnvelope(None, None, document)


@dataclass(frozen=True)
class ArgumentProblem:
    """Arguments the agent has to ask the caller for again, and the sentence to ask with."""

    missing: list[str]
    message: str


_ASK = {
    "start": "Which day and time would you like?",
    "time_zone": "Which time zone are you in?",
    "name": "May I have your name?",
    "email": "May I have your e-mail address?",
    "phone": "May I have your phone number?",
    "event_type_id": "Which kind of appointment would you like?",
    "length_minutes": "How long should the appointment be?",
    "location": "Where should the appointment take place?",
    "call_id": "I'm sorry, I can't find this call right now.",
}
_FIX = {
    "start": "I didn't get that time. Which day and time would you like?",
    "after": "I didn't get that date. From which day should I look?",
    "time_zone": "I didn't get your time zone. Which city or time zone are you in?",
    "email": "That e-mail address doesn't look right. Could you spell it for me?",
    "phone": "That phone number doesn't look right. Could you repeat it?",
    "name": "Could you tell me your name again?",
    "length_minutes": "How long should the appointment be?",
}


def ask_for(fields: list[str], *, malformed: frozenset[str] = frozenset()) -> ArgumentProblem:
    """The question for ``fields``: a fresh one for a missing field, a correction for a
    ``malformed`` one, and the field's name for a booking question of the event type."""
    sentences: list[str] = []
    for name in fields:
        if name in malformed and name in _FIX:
            sentence = _FIX[name]
        else:
            sentence = _ASK.get(name) or f"I also need your answer to: {name.replace('_', ' ')}."
        if sentence not in sentences:
            sentences.append(sentence)
    return ArgumentProblem(list(fields), " ".join(sentences))


M = TypeVar("M", bound=_Args)


def parse_args(model: type[M], args: dict[str, Any]) -> M | ArgumentProblem:
    """``args`` as ``model``, or the question that gets what is missing or malformed."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        fields: list[str] = []
        malformed: set[str] = set()
        for error in exc.errors(include_url=False, include_input=False):
            name = str(error["loc"][0]) if error["loc"] else "args"
            if name not in fields:
                fields.append(name)
            if error["type"] != "missing":
                malformed.add(name)
        return ask_for(fields, malformed=frozenset(malformed))
