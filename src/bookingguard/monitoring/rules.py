"""Detection rules: each one set-based SQL predicate over calls or appointments.

A rule is a predicate on one entity table, a time column to window it by and, for
the safe cases, the column values that correct it. The runner turns a rule into a
handful of set-based statements (select, store, fix); nothing here loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
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

from bookingguard.db.alerts import severity_of
from bookingguard.db.models import Appointment, Call

__all__ = ["RULES", "Rule", "Window", "rule_named"]

calls: Table = Call.__table__  # type: ignore[assignment]
appointments: Table = Appointment.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Window:
    """The rows a run looks at: ``since`` is None for ``--all``."""

    since: datetime | None
    until: datetime


@dataclass(frozen=True)
class Rule:
    """One detection rule; ``fix`` maps columns to the SQL that corrects them."""

    name: str
    entity_type: str
    table: Table
    time_column: str
    description: str
    predicate: Callable[[], ColumnElement[bool]]
    fix: Callable[[], Mapping[str, ColumnElement[object]]] | None = None
    #: The same finding phrased for a scan of every row (``--all``), when a join lets the
    #: planner hash instead of probing an index once per row; given the window's end.
    ids_all: Callable[[datetime], Select[tuple[int]]] | None = None
    #: A finding older than this (by ``time_column``) no longer holds: "recent" rules.
    holds_for: timedelta | None = None
    sample_columns: tuple[str, ...] = ()

    @property
    def severity(self) -> str:
        return severity_of(self.name)

    def condition(self, window: Window) -> ColumnElement[bool]:
        """The predicate restricted to the window (and to ``holds_for``)."""
        time = self.table.c[self.time_column]
        parts = [self.predicate()]
        if window.since is not None:
            parts.append(time >= window.since)
        parts.append(time <= window.until)
        if self.holds_for is not None:
            parts.append(time >= window.until - self.holds_for)
        return and_(*parts)

    def still_holds(
        self, entity_id: ColumnElement[int | None], now: datetime
    ) -> ColumnElement[bool]:
        """True while the entity still matches (with no window): what resolution checks."""
        parts = [self.table.c.id == entity_id, self.predicate()]
        if self.holds_for is not None:
            parts.append(self.table.c[self.time_column] >= now - self.holds_for)
        return exists(select(literal(1)).where(and_(*parts)))

    def ids(self, window: Window) -> Select[tuple[int]]:
        """The ids of the entities found in the window: the rule's one statement."""
        if window.since is None and self.ids_all is not None and self.holds_for is None:
            return self.ids_all(window.until)
        return select(self.table.c.id).where(self.condition(window))


def _live_appointment_of(call_id: ColumnElement[int]) -> ColumnElement[bool]:
    return exists(
        select(literal(1)).where(
            appointments.c.call_id == call_id, appointments.c.status != "cancelled"
        )
    )


def _session_outcome_mismatch() -> ColumnElement[bool]:
    says_booked = func.coalesce(calls.c.session_outcome, "") == "appointment_booked"
    return or_(
        and_(says_booked, calls.c.appointment_made.is_not(True)),
        and_(~says_booked, calls.c.appointment_made.is_(True)),
    )


def _missing_appointment() -> ColumnElement[bool]:
    return and_(calls.c.appointment_made.is_(True), ~_live_appointment_of(calls.c.id))


def _missing_direction() -> ColumnElement[bool]:
    return or_(calls.c.direction.is_(None), calls.c.direction == "")


def _orphaned_appointment() -> ColumnElement[bool]:
    flagged_call = exists(
        select(literal(1)).where(
            calls.c.id == appointments.c.call_id, calls.c.appointment_made.is_(True)
        )
    )
    return and_(appointments.c.status != "cancelled", ~flagged_call)


def _inconsistent_link_status() -> ColumnElement[bool]:
    # One correlated EXISTS compared with the flag: an index probe per call, where an
    # OR of two EXISTS makes PostgreSQL hash the whole appointments table twice.
    linked = calls.c.appointment_link_status.is_not_distinct_from("linked")
    return linked != _live_appointment_of(calls.c.id)


def _inconsistent_link_status_all(until: datetime) -> Select[tuple[int]]:
    live = (
        select(appointments.c.call_id)
        .where(appointments.c.status != "cancelled", appointments.c.call_id.is_not(None))
        .distinct()
        .subquery("live")
    )
    linked = calls.c.appointment_link_status.is_not_distinct_from("linked")
    return (
        select(calls.c.id)
        .select_from(calls.outerjoin(live, live.c.call_id == calls.c.id))
        .where(linked != live.c.call_id.is_not(None), calls.c.created_at <= until)
    )


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
        description="live appointment whose call is missing or not flagged appointment_made",
        predicate=_orphaned_appointment,
        sample_columns=("call_id", "calcom_booking_uid", "status"),
    ),
    Rule(
        name="inconsistent_link_status",
        entity_type="call",
        table=calls,
        time_column="created_at",
        description="appointment_link_status disagrees with the call's appointments",
        predicate=_inconsistent_link_status,
        ids_all=_inconsistent_link_status_all,
        fix=_fix_link_status,
        sample_columns=("retell_call_id", "appointment_link_status"),
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
