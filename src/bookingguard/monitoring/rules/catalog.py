"""The catalog: the detection rules, each a predicate, a severity and what corrects it.

The six of the predecessor review, and ``stale_booking_claim``: a booking whose request
died between claiming its key and recording what Cal.com answered, and that nothing has
settled since (``serve``'s ``ClaimSettler`` could not reach Cal.com, or no ``serve``
runs): the caller may have heard nothing.

Adding a rule is adding one ``Rule`` to ``RULES`` with its plain predicate; a faster
phrasing (``plans``) is an optimisation the rule can go without.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
)

from bookingguard.db.models import CLAIM_STATUS, Appointment, Call, is_live_appointment
from bookingguard.monitoring.rules.model import Rule
from bookingguard.monitoring.rules.plans import (
    inconsistent_link_status_all,
    inconsistent_link_status_window,
    missing_appointment_window,
    orphaned_appointment_all,
    orphaned_appointment_window,
)

__all__ = ["RULES", "STALE_CLAIM_AFTER", "rule_named"]

calls: Table = Call.__table__  # type: ignore[assignment]
appointments: Table = Appointment.__table__  # type: ignore[assignment]

#: A claim still pending this long after it was taken is left unsettled: its booking's
#: create and retries end within ``validation.retry_budget_seconds`` (30 s by default),
#: and once it is ``validation.claim_stale_seconds`` old (2 minutes) a retried request or
#: ``serve``'s ``ClaimSettler`` (every minute) takes it over.
STALE_CLAIM_AFTER = timedelta(minutes=10)


def _live_appointment_of(call_id: ColumnElement[int]) -> ColumnElement[bool]:
    return exists(
        select(literal(1)).where(
            appointments.c.call_id == call_id, is_live_appointment(appointments.c.status)
        )
    )


def _session_outcome_mismatch() -> ColumnElement[bool]:
    says_booked = func.coalesce(calls.c.session_outcome, "") == "appointment_booked"
    return or_(
        and_(says_booked, calls.c.appointment_made.is_not(True)),
        and_(~says_booked, calls.c.appointment_made.is_(True)),
    )


def _missing_appointment() -> ColumnElement[bool]:
    return _missing_appointment_given(_live_appointment_of(calls.c.id))


def _missing_appointment_given(live: ColumnElement[bool]) -> ColumnElement[bool]:
    return and_(calls.c.appointment_made.is_(True), ~live)


def _missing_direction() -> ColumnElement[bool]:
    return or_(calls.c.direction.is_(None), calls.c.direction == "")


def _orphaned_appointment() -> ColumnElement[bool]:
    flagged_call = exists(
        select(literal(1)).where(
            calls.c.id == appointments.c.call_id, calls.c.appointment_made.is_(True)
        )
    )
    # A booking made at Cal.com, not through a call, has no call to be flagged.
    made_elsewhere = and_(appointments.c.source == "calcom", appointments.c.call_id.is_(None))
    return and_(is_live_appointment(appointments.c.status), ~flagged_call, ~made_elsewhere)


def _inconsistent_link_status() -> ColumnElement[bool]:
    # One correlated EXISTS compared with the flag: an index probe per call, where an
    # OR of two EXISTS makes the planner hash the whole appointments table twice.
    return _inconsistent_link_status_given(_live_appointment_of(calls.c.id))


def _inconsistent_link_status_given(live: ColumnElement[bool]) -> ColumnElement[bool]:
    return calls.c.appointment_link_status.is_not_distinct_from("linked") != live


def _claim() -> ColumnElement[bool]:
    return appointments.c.status == CLAIM_STATUS


def _recent_failure() -> ColumnElement[bool]:
    return calls.c.booking_failed.is_(True)


def _fix_direction() -> Mapping[str, ColumnElement[object]]:
    return {"direction": literal("inbound")}


def _fix_link_status() -> Mapping[str, ColumnElement[object]]:
    live = _live_appointment_of(calls.c.id)
    return {
        "appointment_link_status": case((live, literal("linked")), else_=literal("unlinked")),
        "appointment_linked_at": case(
            (live, func.coalesce(calls.c.appointment_linked_at, func.current_timestamp())),
            else_=null(),
        ),
    }


RULES: tuple[Rule, ...] = (
    Rule(
        name="session_outcome_mismatch",
        entity_type="call",
        table=calls,
        time_column="created_at",
        description="session outcome and appointment_made disagree",
        predicate=_session_outcome_mismatch,
        sample_columns=("retell_call_id", "session_outcome", "appointment_made"),
    ),
    Rule(
        name="missing_appointment",
        entity_type="call",
        table=calls,
        time_column="created_at",
        description="call marked appointment_made with no live appointment (phantom booking)",
        predicate=_missing_appointment,
        ids_window=missing_appointment_window,
        given_live=_missing_appointment_given,
        sample_columns=("retell_call_id", "session_outcome"),
    ),
    Rule(
        name="missing_direction",
        entity_type="call",
        table=calls,
        time_column="created_at",
        description="call has no direction",
        predicate=_missing_direction,
        fix=_fix_direction,
        sample_columns=("retell_call_id", "direction"),
    ),
    Rule(
        name="orphaned_appointment",
        entity_type="appointment",
        table=appointments,
        time_column="created_at",
        description=(
            "live appointment whose call is missing or not flagged appointment_made"
            " (one booked at Cal.com without a call is not)"
        ),
        predicate=_orphaned_appointment,
        ids_all=orphaned_appointment_all,
        ids_window=orphaned_appointment_window,
        sample_columns=("call_id", "calcom_booking_uid", "status"),
    ),
    Rule(
        name="inconsistent_link_status",
        entity_type="call",
        table=calls,
        time_column="created_at",
        description="appointment_link_status disagrees with the call's appointments",
        predicate=_inconsistent_link_status,
        ids_all=inconsistent_link_status_all,
        ids_window=inconsistent_link_status_window,
        given_live=_inconsistent_link_status_given,
        fix=_fix_link_status,
        sample_columns=("retell_call_id", "appointment_link_status"),
    ),
    Rule(
        name="stale_booking_claim",
        entity_type="appointment",
        table=appointments,
        time_column="created_at",
        description=(
            "booking claim still pending_creation long after it was taken: its request died"
            " before recording Cal.com's answer"
        ),
        predicate=_claim,
        settles_after=STALE_CLAIM_AFTER,
        sample_columns=("call_id", "idempotency_key", "starts_at"),
    ),
    Rule(
        name="recent_failures",
        entity_type="call",
        table=calls,
        time_column="created_at",
        description="booking failed on this call",
        predicate=_recent_failure,
        holds_for=timedelta(hours=24),
        sample_columns=("retell_call_id",),
    ),
)


def rule_named(name: str) -> Rule:
    for rule in RULES:
        if rule.name == name:
            return rule
    raise KeyError(name)
