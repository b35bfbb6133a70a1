"""Detection rules: each one set-based SQL predicate over calls or appointments.

A rule is a predicate on one entity table, a time column to window it by and, for
the safe cases, the column values that correct it. The runner turns a rule into a
handful of set-based statements (select, store, fix); nothing here loops over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Column,
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from bookingguard.db.alerts import severity_of
from bookingguard.db.models import Appointment, Call

__all__ = [
    "RULES",
    "Reach",
    "ReachBounds",
    "Rule",
    "SharedScan",
    "Window",
    "reach",
    "rule_named",
    "shared_call_scan",
    "windowed",
]

calls: Table = Call.__table__  # type: ignore[assignment]
appointments: Table = Appointment.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Reach:
    """The lowest call ids a window's rows point at (None: the window has none).

    Call ids grow with ``created_at``, so these bound the rows of the other table a
    window's rules need to about the window's own: one range of an index read and
    hashed, instead of an index probe per row of the window (measured 8 ms against
    20 ms per rule over 10 000 calls).
    """

    #: The lowest id of the window's calls.
    calls_from: int | None
    #: The lowest ``call_id`` of the window's appointments.
    appointment_calls_from: int | None


@dataclass(frozen=True)
class ReachBounds:
    """A ``Reach`` in SQL: bound values, or parameters of a statement built once."""

    calls_from: ColumnElement[int | None]
    appointment_calls_from: ColumnElement[int | None]


@dataclass(frozen=True)
class Window:
    """The rows a run looks at: ``since`` is None for ``--all``."""

    since: datetime | None
    until: datetime
    reach: Reach | None = None


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
    #: The same finding phrased for a window with its ``Reach``, given the window's
    #: condition on ``table``: a hash join over the ids the window can reach.
    ids_window: Callable[[ReachBounds, ColumnElement[bool]], Select[tuple[int]]] | None = None
    #: The predicate given whether the call has a live appointment (a rule over ``calls``
    #: that tests it): lets a window's call rules share one scan joined once to them.
    given_live: Callable[[ColumnElement[bool]], ColumnElement[bool]] | None = None
    #: A finding older than this (by ``time_column``) no longer holds: "recent" rules.
    holds_for: timedelta | None = None
    sample_columns: tuple[str, ...] = ()

    @property
    def severity(self) -> str:
        return severity_of(self.name)

    def condition(self, window: Window) -> ColumnElement[bool]:
        """The predicate restricted to the window (and to ``holds_for``)."""
        return and_(self.predicate(), self.in_window(window))

    def in_window(self, window: Window) -> ColumnElement[bool]:
        """The rows of ``table`` the window (and ``holds_for``) covers, whatever they hold."""
        held_since = None if self.holds_for is None else window.until - self.holds_for
        return self.within(window.since, window.until, held_since)

    def within(
        self,
        since: datetime | BindParameter[datetime] | None,
        until: datetime | BindParameter[datetime],
        held_since: datetime | BindParameter[datetime] | None,
    ) -> ColumnElement[bool]:
        """``in_window`` from its bounds: values, or bound parameters (``windowed``)."""
        time = self.table.c[self.time_column]
        parts = []
        if since is not None:
            parts.append(time >= since)
        parts.append(time <= until)
        if held_since is not None:
            parts.append(time >= held_since)
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
        if window.reach is not None and self.ids_window is not None:
            bounds = ReachBounds(
                _bound(window.reach.calls_from), _bound(window.reach.appointment_calls_from)
            )
            return self.ids_window(bounds, self.in_window(window))
        return select(self.table.c.id).where(self.condition(window))


def windowed(rule: Rule, window: Window) -> tuple[Select[tuple[int]], dict[str, Any]] | None:
    """``rule.ids(window)`` as a statement built once for the rule, and its parameters.

    For a window with its reach, when the rule has a form for it (None otherwise): run
    every minute, the statement is built, keyed and cached once instead of every run.
    """
    ids_window = rule.ids_window
    if window.since is None or window.reach is None or ids_window is None:
        return None
    parameters: dict[str, Any] = {
        "since": window.since,
        "until": window.until,
        "calls_from": window.reach.calls_from,
        "appointment_calls_from": window.reach.appointment_calls_from,
    }
    if rule.holds_for is not None:
        parameters["held_since"] = window.until - rule.holds_for
    return _windowed_statement(rule, ids_window), parameters


@lru_cache(maxsize=16)
def _windowed_statement(
    rule: Rule, ids_window: Callable[[ReachBounds, ColumnElement[bool]], Select[tuple[int]]]
) -> Select[tuple[int]]:
    time_type = rule.table.c[rule.time_column].type
    bounds = ReachBounds(
        bindparam("calls_from", type_=BigInteger()),
        bindparam("appointment_calls_from", type_=BigInteger()),
    )
    in_window = rule.within(
        bindparam("since", type_=time_type),
        bindparam("until", type_=time_type),
        None if rule.holds_for is None else bindparam("held_since", type_=time_type),
    )
    return ids_window(bounds, in_window)


def reach(session: Session, window: Window) -> Window:
    """``window`` with its ``Reach`` (one statement); ``--all`` has none to compute."""
    if window.since is None:
        return window
    calls_from, appointment_calls_from = session.execute(
        _reach_statement(), {"since": window.since, "until": window.until}
    ).one()
    return replace(window, reach=Reach(calls_from, appointment_calls_from))


@cache
def _reach_statement() -> Select[Any]:
    """Built once: only the window's bounds (parameters) change from run to run."""

    def lowest(column: ColumnElement[int | None], time: Column[datetime]) -> ScalarSelect[Any]:
        # The subquery is planned on its own (OFFSET 0): min() alone walks the primary key
        # from its start until a row falls in the window, nearly the whole table.
        rows = select(column.label("id")).where(
            time >= bindparam("since", type_=time.type), time <= bindparam("until", type_=time.type)
        )
        return select(func.min(rows.offset(0).subquery().c.id)).scalar_subquery()

    return select(
        lowest(calls.c.id, calls.c.created_at),
        lowest(appointments.c.call_id, appointments.c.created_at),
    )


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
    return and_(appointments.c.status != "cancelled", ~flagged_call)


def _inconsistent_link_status() -> ColumnElement[bool]:
    # One correlated EXISTS compared with the flag: an index probe per call, where an
    # OR of two EXISTS makes PostgreSQL hash the whole appointments table twice.
    return _inconsistent_link_status_given(_live_appointment_of(calls.c.id))


def _inconsistent_link_status_given(live: ColumnElement[bool]) -> ColumnElement[bool]:
    return calls.c.appointment_link_status.is_not_distinct_from("linked") != live


def _inconsistent_link_status_all(until: datetime) -> Select[tuple[int]]:
    # Joined to every live appointment, not to their distinct call ids: each of a call's
    # rows gives the same verdict, so the few calls found are made distinct instead of the
    # 900 000 appointments (measured 280 ms against 440-600 ms, count(*) 55-80 ms).
    live = appointments.alias("live")
    linked = calls.c.appointment_link_status.is_not_distinct_from("linked")
    return (
        select(calls.c.id)
        .select_from(
            calls.outerjoin(live, and_(live.c.call_id == calls.c.id, live.c.status != "cancelled"))
        )
        .where(linked != live.c.call_id.is_not(None), calls.c.created_at <= until)
        .distinct()
    )


def _bound(call_id: int | None) -> ColumnElement[int | None]:
    """A reach as a bound parameter: NULL (nothing at or above it) when the window is empty."""
    return literal(call_id, BigInteger())


def _live_call_ids(calls_from: ColumnElement[int | None]) -> Select[tuple[int]]:
    return (
        select(appointments.c.call_id)
        .where(appointments.c.status != "cancelled", appointments.c.call_id >= calls_from)
        .distinct()
    )


# In the window forms below, rows pointing under the reach (written after it was read,
# with an older id) are left to the next run rather than judged against a bounded set.


def _missing_appointment_window(
    reach: ReachBounds, in_window: ColumnElement[bool]
) -> Select[tuple[int]]:
    live = _live_call_ids(reach.calls_from).subquery("live")
    return (
        select(calls.c.id)
        .select_from(calls.outerjoin(live, live.c.call_id == calls.c.id))
        .where(
            in_window,
            calls.c.id >= reach.calls_from,
            calls.c.appointment_made.is_(True),
            live.c.call_id.is_(None),
        )
    )


def _orphaned_appointment_window(
    reach: ReachBounds, in_window: ColumnElement[bool]
) -> Select[tuple[int]]:
    # Two parts: the window's appointments of a call, anti-joined to the flagged calls the
    # window reaches (made distinct, so that the planner merges or hashes them), and those of
    # no call. Split so, the first part can read the live appointments' index from the reach
    # on, already in call order: 3.5-4.3 ms for the bench's 9 000 where the planner does,
    # against 6 ms where one OR over both parts read them by time and sorted them. Where
    # statistics lag the newest rows and the planner expects a few dozen in the last hour,
    # it still reads them by time and sorts them (6 ms); without the DISTINCT it then
    # probed the calls' index once per appointment (21 ms), as a NOT EXISTS did (19 ms).
    appointment_calls_from = reach.appointment_calls_from
    live = appointments.c.status != "cancelled"
    flagged = (
        select(calls.c.id)
        .where(calls.c.appointment_made.is_(True), calls.c.id >= appointment_calls_from)
        .distinct()
        .subquery("flagged")
    )
    of_a_call = (
        select(appointments.c.id)
        .select_from(appointments.outerjoin(flagged, flagged.c.id == appointments.c.call_id))
        .where(
            in_window,
            live,
            appointments.c.call_id >= appointment_calls_from,
            flagged.c.id.is_(None),
        )
    )
    of_no_call = select(appointments.c.id).where(in_window, live, appointments.c.call_id.is_(None))
    found = union_all(of_a_call, of_no_call).subquery("orphaned")
    return select(found.c.id)


def _inconsistent_link_status_window(
    reach: ReachBounds, in_window: ColumnElement[bool]
) -> Select[tuple[int]]:
    live = _live_call_ids(reach.calls_from).subquery("live")
    linked = calls.c.appointment_link_status.is_not_distinct_from("linked")
    return (
        select(calls.c.id)
        .select_from(calls.outerjoin(live, live.c.call_id == calls.c.id))
        .where(in_window, calls.c.id >= reach.calls_from, linked != live.c.call_id.is_not(None))
    )


@dataclass(frozen=True)
class SharedScan:
    """One statement finding several rules' entities: each row an id and a flag per rule."""

    rules: tuple[Rule, ...]
    statement: Select[Any]
    #: What the statement is run with: the window, its reach, each recent rule's horizon.
    parameters: Mapping[str, Any]


def shared_call_scan(rules: Sequence[Rule], window: Window) -> SharedScan | None:
    """One statement for the window's rules over ``calls``, instead of one per rule.

    The window's calls are read once and joined once to the live appointments they reach
    (see ``Reach``). None outside a window with its reach, when fewer than two rules would
    share it, or when they window by different columns.
    """
    over_calls = tuple(rule for rule in rules if rule.table is calls)
    time_columns = {rule.time_column for rule in over_calls}
    if window.reach is None or window.since is None or len(over_calls) < 2 or len(time_columns) > 1:
        return None
    parameters = {
        "since": window.since,
        "until": window.until,
        "calls_from": window.reach.calls_from,
        **{
            f"held_since_{index}": window.until - rule.holds_for
            for index, rule in enumerate(over_calls)
            if rule.holds_for is not None
        },
    }
    statement = _shared_call_statement(over_calls, time_columns.pop())
    return SharedScan(rules=over_calls, statement=statement, parameters=parameters)


@lru_cache(maxsize=16)
def _shared_call_statement(rules: tuple[Rule, ...], time_column: str) -> Select[Any]:
    """Built once for a set of rules (1.7 ms a build): only its parameters change."""
    time = calls.c[time_column]
    calls_from = bindparam("calls_from", type_=BigInteger())
    live = (
        select(appointments.c.call_id)
        .where(appointments.c.status != "cancelled", appointments.c.call_id >= calls_from)
        .distinct()
        .subquery("live")
    )
    has_live = live.c.call_id.is_not(None)

    def flag(index: int, rule: Rule) -> ColumnElement[bool]:
        # The window itself is the statement's condition: each flag adds only what narrows it.
        if rule.given_live is None:
            parts = [rule.predicate()]
        else:
            parts = [rule.given_live(has_live), calls.c.id >= calls_from]
        if rule.holds_for is not None:
            parts.append(time >= bindparam(f"held_since_{index}", type_=time.type))
        return and_(*parts)

    flags = [flag(index, rule) for index, rule in enumerate(rules)]
    return (
        select(calls.c.id, *(flag.label(f"found_{index}") for index, flag in enumerate(flags)))
        .select_from(calls.outerjoin(live, live.c.call_id == calls.c.id))
        .where(
            time >= bindparam("since", type_=time.type),
            time <= bindparam("until", type_=time.type),
            or_(*flags),
        )
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
        ids_window=_missing_appointment_window,
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
        description="live appointment whose call is missing or not flagged appointment_made",
        predicate=_orphaned_appointment,
        ids_window=_orphaned_appointment_window,
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
        ids_window=_inconsistent_link_status_window,
        given_live=_inconsistent_link_status_given,
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
