"""The rule model: what a detection rule is, and the window a run looks at.

A rule is a predicate on one entity table, a time column to window it by and, for
the safe cases, the column values that correct it. Faster phrasings of the same
finding (for a window with its ``Reach``, for a scan of every row, for a scan shared
with other rules) are optional fields, filled in by the catalog from ``plans``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Select,
    Table,
    and_,
    exists,
    literal,
    select,
)

from bookingguard.db.alerts import severity_of

__all__ = ["Reach", "ReachBounds", "Rule", "Window"]


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
    #: A row younger than this (by ``time_column``) is no finding yet: work in flight.
    settles_after: timedelta | None = None
    sample_columns: tuple[str, ...] = ()

    @property
    def severity(self) -> str:
        return severity_of(self.name)

    def condition(self, window: Window) -> ColumnElement[bool]:
        """The predicate restricted to the window (and to ``holds_for``)."""
        return and_(self.predicate(), self.in_window(window))

    def in_window(self, window: Window) -> ColumnElement[bool]:
        """The rows of ``table`` the window (and ``holds_for``, ``settles_after``) covers,
        whatever they hold."""
        held_since = None if self.holds_for is None else window.until - self.holds_for
        return self.within(window.since, self.settled_by(window.until), held_since)

    def settled_by(self, moment: datetime) -> datetime:
        """The latest ``time_column`` of a row that can be a finding at ``moment``."""
        return moment if self.settles_after is None else moment - self.settles_after

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
        if self.settles_after is not None:
            parts.append(self.table.c[self.time_column] <= self.settled_by(now))
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


def _bound(call_id: int | None) -> ColumnElement[int | None]:
    """A reach as a bound parameter: NULL (nothing at or above it) when the window is empty."""
    return literal(call_id, BigInteger())
