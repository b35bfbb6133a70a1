"""Query plans: the statements that find a rule's entities fast, built once and reused.

A rule's plain predicate is correct everywhere; these are the same findings phrased
so that the planner reads only what they need: for a window with its ``Reach`` (a hash
join over the ids the window can reach), for a scan of every row, and one scan of the
window's calls shared by every rule over calls. Statements run every minute are built,
keyed and cached once: only their parameters change from run to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from bookingguard.db.models import Appointment, Call, is_live_appointment
from bookingguard.monitoring.rules.model import Reach, ReachBounds, Rule, Window

__all__ = [
    "SharedScan",
    "inconsistent_link_status_all",
    "inconsistent_link_status_window",
    "missing_appointment_window",
    "orphaned_appointment_all",
    "orphaned_appointment_window",
    "reach",
    "shared_call_scan",
    "windowed",
]

calls: Table = Call.__table__  # type: ignore[assignment]
appointments: Table = Appointment.__table__  # type: ignore[assignment]


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
        "until": rule.settled_by(window.until),
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


def orphaned_appointment_all(until: datetime) -> Select[tuple[int]]:
    """``orphaned_appointment`` over every appointment up to ``until``, in two parts."""
    # Of a call: the live appointments' index (call id, id, created at) anti-joined to the
    # flagged calls, both read in call order. Of no call: the few whose source says where
    # they were made. One OR over both read the source of every row, which the index does
    # not hold: the planner left it for the table (143 ms against 87 on the bench's
    # 200 000 calls), and carrying the source in the index tipped the phantom rule's
    # merge join into a hash join of both tables (108 ms against 40).
    live = is_live_appointment(appointments.c.status)
    before = appointments.c.created_at <= until
    flagged_call = exists(
        select(literal(1)).where(
            calls.c.id == appointments.c.call_id, calls.c.appointment_made.is_(True)
        )
    )
    of_a_call = select(appointments.c.id).where(
        live, before, appointments.c.call_id.is_not(None), ~flagged_call
    )
    # A booking made at Cal.com (source 'calcom') has no call and is no orphan.
    of_no_call = select(appointments.c.id).where(
        live, before, appointments.c.call_id.is_(None), appointments.c.source != "calcom"
    )
    found = union_all(of_a_call, of_no_call).subquery("orphaned")
    return select(found.c.id)


def inconsistent_link_status_all(until: datetime) -> Select[tuple[int]]:
    """``inconsistent_link_status`` over every call up to ``until``: one join, no probe per call."""
    # Joined to every live appointment, not to their distinct call ids: each of a call's
    # rows gives the same verdict, so the few calls found are made distinct instead of the
    # 900 000 appointments (measured 280 ms against 440-600 ms, count(*) 55-80 ms).
    live = appointments.alias("live")
    linked = calls.c.appointment_link_status.is_not_distinct_from("linked")
    return (
        select(calls.c.id)
        .select_from(
            calls.outerjoin(
                live, and_(live.c.call_id == calls.c.id, is_live_appointment(live.c.status))
            )
        )
        .where(linked != live.c.call_id.is_not(None), calls.c.created_at <= until)
        .distinct()
    )


def _live_call_ids(calls_from: ColumnElement[int | None]) -> Select[tuple[int]]:
    return (
        select(appointments.c.call_id)
        .where(is_live_appointment(appointments.c.status), appointments.c.call_id >= calls_from)
        .distinct()
    )


# In the window forms below, rows pointing under the reach (written after it was read,
# with an older id) are left to the next run rather than judged against a bounded set.


def missing_appointment_window(
    reach: ReachBounds, in_window: ColumnElement[bool]
) -> Select[tuple[int]]:
    """``missing_appointment`` in a window: its calls anti-joined to the live appointments"""
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


def orphaned_appointment_window(
    reach: ReachBounds, in_window: ColumnElement[bool]
) -> Select[tuple[int]]:
    """``orphaned_appointment`` in a window: its appointments anti-joined to the flagged calls."""
    # Two parts: the window's appointments of a call, anti-joined to the flagged calls the
    # window reaches (made distinct, so that the planner merges or hashes them), and those of
    # no call. Split so, the first part can read the live appointments' index from the reach
    # on, already in call order: 3.5-4.3 ms for the bench's 9 000 where the planner does,
    # against 6 ms where one OR over both parts read them by time and sorted them. Where
    # statistics lag the newest rows and the planner expects a few dozen in the last hour,
    # it still reads them by time and sorts them (6 ms); without the DISTINCT it then
    # probed the calls' index once per appointment (21 ms), as a NOT EXISTS did (19 ms).
    appointment_calls_from = reach.appointment_calls_from
    live = is_live_appointment(appointments.c.status)
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
    # Of no call: a booking made at Cal.com (source 'calcom') has none and is no orphan.
    of_no_call = select(appointments.c.id).where(
        in_window, live, appointments.c.call_id.is_(None), appointments.c.source != "calcom"
    )
    found = union_all(of_a_call, of_no_call).subquery("orphaned")
    return select(found.c.id)


def inconsistent_link_status_window(
    reach: ReachBounds, in_window: ColumnElement[bool]
) -> Select[tuple[int]]:
    """``inconsistent_link_status`` in a window: its calls joined to the live appointments"""
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
    # A rule that lets its rows settle ends its window earlier: it runs on its own.
    over_calls = tuple(rule for rule in rules if rule.table is calls and rule.settles_after is None)
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
        .where(is_live_appointment(appointments.c.status), appointments.c.call_id >= calls_from)
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
