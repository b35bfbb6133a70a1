"""Running one monitor run's rules inside its transaction: all together, or one by one.

Together, the window's rules over calls share one scan, samples and open alerts are
read once for all rules, re-detections are bumped in one statement, and a rule with
nothing to write costs no statement. One by one, each rule runs behind a savepoint of
its own: the way a rule that fails is told apart from the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CompoundSelect,
    Select,
    Table,
    TextualSelect,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import ConsistencyAlert
from bookingguard.db.monitor_queries import (
    IdLists,
    bound_ids,
    id_lists,
    runs_side_statements,
    tune_monitor_transaction,
)
from bookingguard.db.uow import UnitOfWork
from bookingguard.monitoring.alerting import RuleOutcome
from bookingguard.monitoring.rules import Rule, Window, reach, shared_call_scan, windowed
from bookingguard.monitoring.store import (
    StoreOutcome,
    bump_found,
    open_alert_counts,
    resolve_gone,
    store_rule,
)
from bookingguard.review.queue import PRIORITY_BY_SEVERITY, file_many_for_review

__all__ = ["INLINE_IDS", "RuleRunner", "describe_error"]

#: Up to this many findings, later statements take the ids as a list, bound as one
#: parameter (no re-run of the rule); beyond it they re-run the rule's statement.
INLINE_IDS = 30000

alerts: Table = ConsistencyAlert.__table__  # type: ignore[assignment]


class RuleRunner:
    """Runs a monitor's rules over a window and stores what they find."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        sample_size: int,
        clock: Callable[[], datetime],
        sessions: sessionmaker[Session] | None = None,
    ) -> None:
        self._rules = tuple(rules)
        self._sample_size = sample_size
        self._clock = clock
        #: Where the rules outside a shared scan run beside it, if given and the database
        #: runs a second connection's statement at the same time.
        self._sessions = sessions

    def run(
        self,
        uow: UnitOfWork,
        window: Window,
        *,
        fix: bool,
        on_rule: Callable[[str], None] | None,
    ) -> dict[str, RuleOutcome]:
        """Every rule's outcome, in the rules' order: all together, or else one by one.

        Together, first in the run's transaction: the window's rules over calls share one
        scan, samples and open alerts are read once for all rules, and a rule with nothing
        to write costs no statement. If anything in there raises, the transaction (which
        holds nothing else yet) is rolled back and each rule runs again alone behind its
        own savepoint, so that the rule at fault is the one reported as errored and the
        others keep their findings. No savepoint around the first try saves its two round
        trips on every run that does not fail.
        """
        reported: set[str] = set()

        def done(name: str) -> None:
            if on_rule is not None and name not in reported:
                reported.add(name)
                on_rule(name)

        session = uow.session
        tune_monitor_transaction(session)
        try:
            return self._run_together(session, window, fix=fix, done=done)
        except Exception:
            uow.rollback()
            tune_monitor_transaction(session)
            reached = self._reach(session, window)
            outcomes: dict[str, RuleOutcome] = {}
            for rule in self._rules:
                outcomes[rule.name] = self._run_rule(session, rule, reached, fix=fix)
                done(rule.name)
            return outcomes

    def _run_together(
        self, session: Session, window: Window, *, fix: bool, done: Callable[[str], None]
    ) -> dict[str, RuleOutcome]:
        """Every rule found, then every rule stored: shared statements run once for all."""
        now = self._clock()
        if any(rule.ids_window for rule in self._rules):
            window = reach(session, window)
        found, seconds = self._find_all(session, window, done=done)
        samples = self._samples(
            session, {rule.name: found[rule.name][: self._sample_size] for rule in self._rules}
        )
        open_alerts = open_alert_counts(session, [rule.name for rule in self._rules])
        # Re-detections are bumped in one statement for every rule that has some (a rule
        # with more findings than it lists, or that corrects them, does its own).
        to_bump = [
            rule
            for rule in self._rules
            if open_alerts.get(rule.name)
            and 0 < len(found[rule.name]) <= INLINE_IDS
            and not (fix and rule.fix is not None)
        ]
        bumped: dict[str, set[int]] = {}
        if to_bump:
            started = time.perf_counter()
            bumped = bump_found(
                session,
                [(rule.name, rule.entity_type, found[rule.name]) for rule in to_bump],
                now=now,
            )
            elapsed = time.perf_counter() - started
            for rule in to_bump:
                seconds[rule.name] += elapsed
        outcomes: dict[str, RuleOutcome] = {}
        for rule in self._rules:
            started = time.perf_counter()
            outcome = self._store(
                session,
                rule,
                window,
                found[rule.name],
                samples[rule.name],
                open_alerts=open_alerts.get(rule.name, 0),
                bumped=bumped.get(rule.name),
                fix=fix,
                now=now,
            )
            outcome.duration_seconds = seconds[rule.name] + time.perf_counter() - started
            outcomes[rule.name] = outcome
        return outcomes

    def _find_all(
        self, session: Session, window: Window, *, done: Callable[[str], None]
    ) -> tuple[dict[str, list[int]], dict[str, float]]:
        """Each rule's ids, and the time of the statement that found them (shared or its own).

        Where the database runs statements on two connections at the same time, the rules
        outside a shared scan run beside it, on a connection of their own: in a window that
        is the orphaned-appointment rule, whose 6 ms then overlap the scan's 7 instead of
        following them. Each statement reads its own snapshot either way (read committed).
        Progress is reported as each rule's statement returns: that is the long part of a
        run over every row, the writes that follow are short.
        """
        found: dict[str, list[int]] = {}
        seconds: dict[str, float] = {}
        shared = shared_call_scan(self._rules, window)
        alone = [rule for rule in self._rules if shared is None or rule not in shared.rules]
        beside: Future[dict[str, tuple[list[int], float]]] | None = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            if (
                shared is not None
                and alone
                and self._sessions is not None
                and runs_side_statements(session)
            ):
                beside = pool.submit(self._find_beside, self._sessions, alone, window)
            if shared is not None:
                started = time.perf_counter()
                rows = session.execute(shared.statement, shared.parameters).all()
                elapsed = time.perf_counter() - started
                for index, rule in enumerate(shared.rules, start=1):
                    found[rule.name] = sorted(int(row[0]) for row in rows if row[index])
                    seconds[rule.name] = elapsed
                    done(rule.name)
            if beside is not None:
                for name, (ids, took) in beside.result().items():
                    found[name], seconds[name] = ids, took
                    done(name)
        for rule in alone:
            if rule.name not in found:
                started = time.perf_counter()
                found[rule.name] = self._ids(session, rule, window)
                seconds[rule.name] = time.perf_counter() - started
                done(rule.name)
        return found, seconds

    def _find_beside(
        self, sessions: sessionmaker[Session], rules: Sequence[Rule], window: Window
    ) -> dict[str, tuple[list[int], float]]:
        """These rules' ids and times, read in a transaction of their own."""
        with sessions() as session:
            tune_monitor_transaction(session)
            found: dict[str, tuple[list[int], float]] = {}
            for rule in rules:
                started = time.perf_counter()
                found[rule.name] = (self._ids(session, rule, window), time.perf_counter() - started)
            return found

    @staticmethod
    def _ids(session: Session, rule: Rule, window: Window) -> list[int]:
        # The rule's statement alone, so the planner reads only what it tests (index-only in
        # a window); the ids found are then reused by the statements that store them instead
        # of re-running the rule. Joining the table back for the sample columns made the
        # planner hash the whole table whenever it misjudged how many rows a predicate keeps.
        # Select[tuple[int]] is a one-column select of ints; the scalars are the ids.
        built = windowed(rule, window)
        entity_ids = session.scalars(*built) if built else session.scalars(rule.ids(window))
        return sorted(int(cast(int, entity_id)) for entity_id in entity_ids)

    def _reach(self, session: Session, window: Window) -> Window:
        """The window with its reach, or as it is when the reach cannot be read.

        Without it the rules run their plain predicates: a rule whose tables are broken
        then errors on its own, and the others still report.
        """
        if not any(rule.ids_window for rule in self._rules):
            return window
        try:
            with session.begin_nested():
                return reach(session, window)
        except Exception:
            return window

    def _run_rule(self, session: Session, rule: Rule, window: Window, *, fix: bool) -> RuleOutcome:
        """One rule behind a savepoint: its error undoes its own writes, not the others'."""
        started = time.perf_counter()
        try:
            with session.begin_nested():
                found_ids = self._ids(session, rule, window)
                samples = self._samples(session, {rule.name: found_ids[: self._sample_size]})
                outcome = self._store(
                    session,
                    rule,
                    window,
                    found_ids,
                    samples[rule.name],
                    open_alerts=None,
                    fix=fix,
                    now=self._clock(),
                )
        except Exception as exc:
            return RuleOutcome(
                alert_type=rule.name,
                severity=rule.severity,
                entity_type=rule.entity_type,
                errored=True,
                error=describe_error(exc),
                duration_seconds=time.perf_counter() - started,
            )
        outcome.duration_seconds = time.perf_counter() - started
        return outcome

    def _store(
        self,
        session: Session,
        rule: Rule,
        window: Window,
        found_ids: list[int],
        samples: list[dict[str, Any]],
        *,
        open_alerts: int | None,
        bumped: set[int] | None = None,
        fix: bool,
        now: datetime,
    ) -> RuleOutcome:
        """Store one rule's findings and resolve what it no longer finds.

        ``open_alerts`` is how many alerts of the rule were open at the start of the run
        (None: not known), ``bumped`` the entities whose open alert the run bumped already
        (None: bump here). With none open there is nothing to bump; when every open one
        was found again there is nothing to resolve. An alert opened elsewhere (by the
        booking path) after that count may be left to the next run to bump or resolve,
        as one opened after this run would be.
        """
        count = len(found_ids)
        ids: Select[tuple[int]] | list[int] = found_ids if count <= INLINE_IDS else rule.ids(window)
        stored = StoreOutcome(opened=0, bumped=0, resolved=(), corrected=0)
        filed = 0
        if count:
            stored = store_rule(
                session, rule, ids=ids, fix=fix, now=now, any_open=open_alerts != 0, bumped=bumped
            )
            # Filed when the alert opens: a reviewer who closes the item is not refiled
            # every minute while the alert stays open.
            if stored.opened_ids and rule.severity == "critical":
                filed = file_many_for_review(
                    session,
                    call_ids=_calls_of(rule, bound_ids(session, stored.opened_ids)),
                    reason=rule.name,
                    priority=PRIORITY_BY_SEVERITY[rule.severity],
                    now=now,
                    context={"source": "monitor", "alert_type": rule.name},
                )
        resolved: tuple[str, ...] = ()
        if open_alerts is None or open_alerts > stored.bumped:
            resolved = resolve_gone(
                session,
                alert_type=rule.name,
                still_holds=rule.still_holds(alerts.c.entity_id, now),
                now=now,
                found=found_ids if isinstance(ids, list) else (),
            )
        return RuleOutcome(
            alert_type=rule.name,
            severity=rule.severity,
            entity_type=rule.entity_type,
            count=count,
            samples=samples,
            opened=stored.opened,
            resolved=resolved,
            corrected=stored.corrected,
            review_filed=filed,
        )

    def _samples(
        self, session: Session, ids_by_rule: dict[str, list[int]]
    ) -> dict[str, list[dict[str, Any]]]:
        """The sample columns of these entities, in id order: one statement for all tables."""
        rules = [rule for rule in self._rules if rule.name in ids_by_rule]
        samples: dict[str, list[dict[str, Any]]] = {rule.name: [] for rule in rules}
        tables = sorted(
            {rule.table for rule in rules if ids_by_rule[rule.name]}, key=lambda t: t.name
        )
        if not tables:
            return samples
        lists = id_lists(session)
        of_table = {table: [rule for rule in rules if rule.table is table] for table in tables}
        wanted = tuple(
            (
                table,
                tuple(sorted({name for rule in of_table[table] for name in rule.sample_columns})),
            )
            for table in tables
        )
        parameters = {
            f"ids_{index}": lists.ids_value(
                sorted({id_ for rule in of_table[table] for id_ in ids_by_rule[rule.name]})
            )
            for index, table in enumerate(tables)
        }
        rows: dict[str, dict[int, Any]] = {table.name: {} for table in tables}
        for row in session.execute(_samples_statement(lists, wanted), parameters):
            rows[row.sampled_table][row.id] = row
        for rule in rules:
            sampled = rows.get(rule.table.name, {})
            samples[rule.name] = [
                {
                    "entity_type": rule.entity_type,
                    "entity_id": entity_id,
                    **{name: getattr(sampled[entity_id], name) for name in rule.sample_columns},
                }
                for entity_id in ids_by_rule[rule.name]
                if entity_id in sampled
            ]
        return samples


@lru_cache(maxsize=16)
def _samples_statement(
    lists: IdLists, wanted: tuple[tuple[Table, tuple[str, ...]], ...]
) -> Select[Any] | CompoundSelect[Any]:
    """Built once for the tables' sample columns: only their ids (one parameter each) change.

    Each table's rows carry every table's sample columns, NULL where they are another's.
    """
    every = sorted({name for _, names in wanted for name in names})
    parts = [
        select(
            literal(table.name).label("sampled_table"),
            table.c.id,
            *(table.c[name] if name in names else null().label(name) for name in every),
        ).where(table.c.id.in_(lists.ids_parameter(f"ids_{index}")))
        for index, (table, names) in enumerate(wanted)
    ]
    return parts[0] if len(parts) == 1 else union_all(*parts)


def describe_error(exc: BaseException) -> str:
    """The error as one line for a report: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _calls_of(rule: Rule, entity_ids: TextualSelect) -> Select[tuple[int]]:
    """The calls of the rule's entities: themselves, or the calls their rows belong to."""
    table = rule.table
    if rule.entity_type == "call":
        return select(table.c.id).where(table.c.id.in_(entity_ids))
    return select(table.c.call_id).where(table.c.id.in_(entity_ids), table.c.call_id.is_not(None))
