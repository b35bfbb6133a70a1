"""One monitor run: every rule in one transaction; kept in ``check_runs``.

The rules run together first (see ``Monitor._run_rules``); when that raises, it is
rolled back and each rule runs again behind a savepoint of its own. A rule that
raises there is rolled back to its savepoint and recorded as errored, and the others
still run and are committed; the run's report then carries the error and ``check``
exits 3. Notifications are planned in the outbox inside the same transaction (behind
their own savepoint; delivery happens after commit, elsewhere). One commit per run
instead of one per rule: each commit waits for a WAL flush. The run's ``check_runs``
row is written finished, in that same transaction: a run shows up whole or not at
all (one that dies half-way leaves no row stuck at "running").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, insert, select
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import CheckRun, ConsistencyAlert
from bookingguard.db.tuning import bound_ids, plan_monitor_run
from bookingguard.db.uow import UnitOfWork
from bookingguard.monitoring.alerting import AlertPolicy, RuleOutcome, plan_notifications
from bookingguard.monitoring.metrics import MonitorMetrics
from bookingguard.monitoring.rules import RULES, Rule, Window, reach, shared_call_scan
from bookingguard.monitoring.store import (
    StoreOutcome,
    bump_found,
    open_alert_counts,
    resolve_gone,
    store_rule,
)
from bookingguard.review.queue import PRIORITY_BY_SEVERITY, file_many_for_review

__all__ = ["EXIT_CLEAN", "EXIT_CRITICAL", "EXIT_FAILED", "EXIT_WARNINGS", "Monitor", "RunReport"]

EXIT_CLEAN, EXIT_WARNINGS, EXIT_CRITICAL, EXIT_FAILED = 0, 1, 2, 3
SEVERITY_ORDER = ("critical", "warning", "info")
#: Up to this many findings, later statements take the ids as a list, bound as one
#: parameter (no re-run of the rule); beyond it they re-run the rule's statement.
INLINE_IDS = 30000

alerts: Table = ConsistencyAlert.__table__  # type: ignore[assignment]
check_runs: Table = CheckRun.__table__  # type: ignore[assignment]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """What a run found: the ``bookingguard check --json`` document, as an object."""

    run_id: int
    started_at: datetime
    finished_at: datetime
    window: Window
    outcomes: dict[str, RuleOutcome] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    messages_queued: int = 0

    @property
    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(SEVERITY_ORDER, 0)
        for outcome in self.outcomes.values():
            if not outcome.errored:
                totals[outcome.severity] = totals.get(outcome.severity, 0) + outcome.count
        return totals

    @property
    def auto_corrected(self) -> int:
        return sum(outcome.corrected for outcome in self.outcomes.values())

    @property
    def alerts_opened(self) -> int:
        return sum(outcome.opened for outcome in self.outcomes.values())

    @property
    def alerts_resolved(self) -> int:
        return sum(len(outcome.resolved) for outcome in self.outcomes.values())

    @property
    def exit_code(self) -> int:
        """0 clean, 1 only warnings, 2 anything critical, 3 the run itself failed."""
        if self.errors:
            return EXIT_FAILED
        totals = self.totals
        if totals["critical"]:
            return EXIT_CRITICAL
        if totals["warning"]:
            return EXIT_WARNINGS
        return EXIT_CLEAN

    def to_dict(self) -> dict[str, Any]:
        """The Contract's JSON object (DESIGN.md), with ISO 8601 times."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "window": {
                "since": self.window.since.isoformat() if self.window.since else None,
                "until": self.window.until.isoformat(),
            },
            "findings": {
                name: {
                    "severity": outcome.severity,
                    "count": outcome.count,
                    "samples": outcome.samples,
                }
                for name, outcome in self.outcomes.items()
                if not outcome.errored
            },
            "totals": self.totals,
            "auto_corrected": self.auto_corrected,
            "alerts_opened": self.alerts_opened,
            "alerts_resolved": self.alerts_resolved,
            "errors": list(self.errors),
        }


class Monitor:
    """Runs the rules, stores alerts, fixes the safe cases and queues notifications."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        policy: AlertPolicy,
        recent_hours: float = 1.0,
        sample_size: int = 10,
        rules: Sequence[Rule] = RULES,
        clock: Callable[[], datetime] = utc_now,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._recent = timedelta(hours=recent_hours)
        self._sample_size = sample_size
        self._rules = tuple(rules)
        self._clock = clock
        self._metrics = metrics

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def window(self, *, since: timedelta | None = None, scan_all: bool = False) -> Window:
        now = self._clock()
        if scan_all:
            return Window(since=None, until=now)
        return Window(since=now - (since or self._recent), until=now)

    def check(
        self,
        *,
        since: timedelta | None = None,
        scan_all: bool = False,
        fix: bool = True,
        notify: bool = True,
        trigger: str = "manual",
        on_rule: Callable[[str], None] | None = None,
    ) -> RunReport:
        """Run every rule over the window and keep the run; never raises for a rule's error."""
        window = self.window(since=since, scan_all=scan_all)
        started = self._clock()
        report = RunReport(run_id=0, started_at=started, finished_at=started, window=window)
        clock_start = time.perf_counter()
        with UnitOfWork(self._sessions) as uow:
            report.outcomes = self._run_rules(uow, window, fix=fix, on_rule=on_rule)
            report.errors.extend(
                {"rule": outcome.alert_type, "message": outcome.error or ""}
                for outcome in report.outcomes.values()
                if outcome.errored
            )
            if notify:
                self._plan_notifications(uow.session, report)
            report.finished_at = self._clock()
            report.run_id = _keep_run(uow.session, report, trigger=trigger)
            uow.commit()
        if self._metrics is not None:
            self._metrics.observe_run(report.outcomes.values(), time.perf_counter() - clock_start)
            self._metrics.refresh_gauges(self._sessions)
        return report

    def record_outcomes(self, outcomes: Sequence[RuleOutcome], *, notify: bool = True) -> int:
        """Plan notifications for findings computed elsewhere (reconciliation)."""
        with UnitOfWork(self._sessions) as uow:
            queued = plan_notifications(
                uow.session, list(outcomes), policy=self._policy, now=self._clock(), enabled=notify
            )
            uow.commit()
        return queued

    def keep(self, report: RunReport, *, trigger: str) -> int:
        """Keep a run computed elsewhere (reconciliation) in ``check_runs``; returns its id."""
        with UnitOfWork(self._sessions) as uow:
            report.run_id = _keep_run(uow.session, report, trigger=trigger)
            uow.commit()
        return report.run_id

    def _plan_notifications(self, session: Session, report: RunReport) -> None:
        """Queue the run's messages behind a savepoint: if that fails the findings stay."""
        try:
            with session.begin_nested():
                report.messages_queued = plan_notifications(
                    session,
                    list(report.outcomes.values()),
                    policy=self._policy,
                    now=self._clock(),
                )
        except Exception as exc:
            report.errors.append({"rule": "notifications", "message": _describe(exc)})

    def _run_rules(
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
        plan_monitor_run(session)
        try:
            return self._run_together(session, window, fix=fix, done=done)
        except Exception:
            uow.rollback()
            plan_monitor_run(session)
            reached = self._reach(session, window)
            outcomes: dict[str, RuleOutcome] = {}
            for rule in self._rules:
                outcomes[rule.name] = self._run_rule(session, rule, reached, fix=fix)
                done(rule.name)
            return outcomes

    def _run_together(
        self, session: Session, window: Window, *, fix: bool, done: Callable[[str], None]
    ) -> dict[str, RuleOutcome]:
        now = self._clock()
        if any(rule.ids_window for rule in self._rules):
            window = reach(session, window)
        found, seconds = self._find_all(session, window)
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
            for rule in to_bump:
                seconds[rule.name] += time.perf_counter() - started
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
            done(rule.name)
        return outcomes

    def _find_all(
        self, session: Session, window: Window
    ) -> tuple[dict[str, list[int]], dict[str, float]]:
        """Each rule's ids, and the time of the statement that found them (shared or its own)."""
        found: dict[str, list[int]] = {}
        seconds: dict[str, float] = {}
        shared = shared_call_scan(self._rules, window)
        if shared is not None:
            started = time.perf_counter()
            rows = session.execute(shared.statement).all()
            elapsed = time.perf_counter() - started
            for index, rule in enumerate(shared.rules, start=1):
                found[rule.name] = sorted(int(row[0]) for row in rows if row[index])
                seconds[rule.name] = elapsed
        for rule in self._rules:
            if rule.name not in found:
                started = time.perf_counter()
                found[rule.name] = self._ids(session, rule, window)
                seconds[rule.name] = time.perf_counter() - started
        return found, seconds

    @staticmethod
    def _ids(session: Session, rule: Rule, window: Window) -> list[int]:
        # The rule's statement alone, so the planner reads only what it tests (index-only in
        # a window); the ids found are then reused by the statements that store them instead
        # of re-running the rule. Joining the table back for the sample columns made the
        # planner hash the whole table whenever it misjudged how many rows a predicate keeps.
        # Select[tuple[int]] is a one-column select of ints; the scalars are the ids.
        return sorted(int(cast(int, entity_id)) for entity_id in session.scalars(rule.ids(window)))

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
                error=_describe(exc),
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
        booking path) after that count is resolved by the next run, as one opened after
        this run would be.
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
            if stored.opened_ids and rule.severity == "critical" and rule.entity_type == "call":
                table = rule.table
                filed = file_many_for_review(
                    session,
                    call_ids=select(table.c.id).where(
                        table.c.id.in_(bound_ids(session, stored.opened_ids))
                    ),
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
        """The sample columns of these entities, in id order: one statement per table."""
        rules = [rule for rule in self._rules if rule.name in ids_by_rule]
        samples: dict[str, list[dict[str, Any]]] = {rule.name: [] for rule in rules}
        for table in {rule.table for rule in rules if ids_by_rule[rule.name]}:
            of_table = [rule for rule in rules if rule.table is table]
            names = sorted({name for rule in of_table for name in rule.sample_columns})
            ids = sorted({entity_id for rule in of_table for entity_id in ids_by_rule[rule.name]})
            rows = {
                row.id: row
                for row in session.execute(
                    select(table.c.id, *(table.c[name] for name in names)).where(
                        table.c.id.in_(ids)
                    )
                )
            }
            for rule in of_table:
                samples[rule.name] = [
                    {
                        "entity_type": rule.entity_type,
                        "entity_id": entity_id,
                        **{name: getattr(rows[entity_id], name) for name in rule.sample_columns},
                    }
                    for entity_id in ids_by_rule[rule.name]
                    if entity_id in rows
                ]
        return samples


def _keep_run(session: Session, report: RunReport, *, trigger: str) -> int:
    """The finished run as one ``check_runs`` row, written with its findings (one INSERT)."""
    return int(
        session.execute(
            insert(check_runs)
            .values(
                started_at=report.started_at,
                finished_at=report.finished_at,
                window_since=report.window.since,
                window_until=report.window.until,
                status="failed" if report.errors else "succeeded",
                trigger=trigger,
                results={
                    name: {
                        "severity": outcome.severity,
                        "count": outcome.count,
                        "duration_ms": round(outcome.duration_seconds * 1000, 3),
                        "errored": outcome.errored,
                        "auto_corrected": outcome.corrected,
                        "opened": outcome.opened,
                        "resolved": len(outcome.resolved),
                        "review_filed": outcome.review_filed,
                    }
                    for name, outcome in report.outcomes.items()
                },
                totals=report.totals,
                auto_corrected=report.auto_corrected,
                alerts_opened=report.alerts_opened,
                alerts_resolved=report.alerts_resolved,
                errors=list(report.errors),
            )
            .returning(check_runs.c.id)
        ).scalar_one()
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
