"""What an "inconsistent call" is: the one definition the report, the dashboard and the API use.

A call is found inconsistent when a critical or warning alert was raised on it, at any
time, whether still open or since resolved or auto-corrected: a day's calls keep their
verdict when their alerts close. Info alerts (a failed booking, an "appointment linked"
record) never count; a call counts once however many alerts it has, so the
consistency rate stays between 0 and 100.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, distinct, exists, func, literal, select
from sqlalchemy.orm import QueryableAttribute, Session

from bookingguard.db.models import Call, ConsistencyAlert

__all__ = [
    "INCONSISTENCY_SEVERITIES",
    "INCONSISTENT_CALL",
    "found_inconsistent",
    "inconsistent_calls",
]

#: The alert severities that make a call inconsistent.
INCONSISTENCY_SEVERITIES = ("critical", "warning")
#: The definition in words, for the labels of the numbers that use it.
INCONSISTENT_CALL = "a critical or warning alert on the call, raised at any time, open or resolved"


def found_inconsistent(
    call_id: ColumnElement[int] | QueryableAttribute[int],
) -> ColumnElement[bool]:
    """True for the call ``call_id`` when it was found inconsistent (correlated ``EXISTS``)."""
    return exists(
        select(literal(1)).where(
            ConsistencyAlert.entity_type == "call",
            ConsistencyAlert.entity_id == call_id,
            ConsistencyAlert.severity.in_(INCONSISTENCY_SEVERITIES),
        )
    )


def inconsistent_calls(session: Session, *, since: datetime, until: datetime) -> int:
    """How many calls created in [``since``, ``until``) were found inconsistent."""
    count = session.scalar(
        select(func.count(distinct(Call.id))).where(
            Call.created_at >= since, Call.created_at < until, found_inconsistent(Call.id)
        )
    )
    return int(count or 0)
