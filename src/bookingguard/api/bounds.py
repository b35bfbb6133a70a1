"""Bounds on what enters at the edge: text fits its column and has no NUL, numbers and moments
fit the database and Python's ``datetime``.

PostgreSQL refuses a NUL in text and JSONB, a string longer than its ``VARCHAR``
and an integer beyond ``BIGINT``; ``datetime`` cannot hold a moment past year
9999 once converted to UTC. Checked here, such input is a 4xx naming the field,
before anything is written, instead of a 500 from deep inside. The patterns are
written so that both pydantic's regex engine and JSON Schema read them the same
way: the OpenAPI schema states the bound too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from bookingguard.review.notes import VISIBLE_TEXT, is_blank

__all__ = [
    "MAX_BIGINT",
    "MAX_EPOCH_MS",
    "MAX_INT32",
    "MAX_MOMENT",
    "MIN_MOMENT",
    "NO_NUL",
    "VISIBLE_TEXT",
    "BigIntId",
    "EpochMillis",
    "Int32Id",
    "Moment",
    "MomentFilter",
    "Text20",
    "Text40",
    "Text64",
    "Text128",
    "Text200",
    "Text500",
    "clamp_moment",
    "is_blank",
    "moment_in_range",
]

MAX_BIGINT = 2**63 - 1
MAX_INT32 = 2**31 - 1
#: Moments we accept: anything a booking, a call or a filter can sensibly name.
MIN_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_MOMENT = datetime(9000, 1, 1, tzinfo=UTC)
MAX_EPOCH_MS = int(MAX_MOMENT.timestamp() * 1000)

#: Any text without NUL (PostgreSQL cannot store one).
NO_NUL = r"^[^\x00]*$"


def moment_in_range(value: datetime) -> datetime:
    """``value`` if it lies in [1970, 9000) UTC (naive read as UTC), else ``ValueError``."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        utc = aware.astimezone(UTC)
    except OverflowError:
        raise ValueError("moment out of range (1970-01-01 to 9000-01-01 UTC)") from None
    if not MIN_MOMENT <= utc < MAX_MOMENT:
        raise ValueError("moment out of range (1970-01-01 to 9000-01-01 UTC)")
    return value


def clamp_moment(value: datetime) -> datetime:
    """``value`` in UTC, clamped into [1970, 9000): as a filter, 0001 means "from the start"."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        utc = aware.astimezone(UTC)
    except OverflowError:
        return MIN_MOMENT if aware.year < MIN_MOMENT.year else MAX_MOMENT
    return min(max(utc, MIN_MOMENT), MAX_MOMENT)


Text20 = Annotated[str, Field(max_length=20, pattern=NO_NUL)]
Text40 = Annotated[str, Field(max_length=40, pattern=NO_NUL)]
Text64 = Annotated[str, Field(max_length=64, pattern=NO_NUL)]
Text128 = Annotated[str, Field(max_length=128, pattern=NO_NUL)]
Text200 = Annotated[str, Field(max_length=200, pattern=NO_NUL)]
Text500 = Annotated[str, Field(max_length=500, pattern=NO_NUL)]
#: A positive id stored as BIGINT.
BigIntId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
#: A positive 32-bit id (Cal.com's event type ids).
Int32Id = Annotated[int, Field(ge=1, le=MAX_INT32)]
#: Unix milliseconds in the accepted range.
EpochMillis = Annotated[int, Field(ge=0, lt=MAX_EPOCH_MS)]
#: A moment in the accepted range.
Moment = Annotated[datetime, AfterValidator(moment_in_range)]
#: A moment bounding a filter: any date-time is accepted, clamped into the range.
MomentFilter = Annotated[datetime, AfterValidator(clamp_moment)]
