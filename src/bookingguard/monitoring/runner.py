"""One monitor run: every rule in one transaction; kept in ``check_runs``.

The rules run together first (see ``rule_runs``); when that raises, it is
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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.clock import utc_now
from bookingguard.db.models import CheckRun
from bookingguard.db.uow import UnitOfWork
from bookingguard.monitoring.alerting import AlertPolicy, RuleOutcome, plan_notifications
from bookingguard.monitoring.metrics import MonitorMetrics
from bookingguard.monitoring.rule_runs import RuleRunner, describe_error
from bookingguard.monitoring.rules import RULES, Rule, Window

__all__ = ["EXIT_CLEAN", "EXIT_CRITICAL", "EXIT_FAILED", "EXIT_WARNINGS", "Monitor", "RunReport"]

EXIT_CLEAN, EXIT_WARNINGS, EXIT_CRITICAL, EXIT_FAILED = 0, 1, 2, 3
SEVERITY_ORDER = ("critical", "warning", "info")

check_runs: Table = CheckRun.__table__  # type: ignore[assignment]


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
        """The ``check --json`` object (README, CLI reference), with ISO 8601 times."""
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
        self._rules = tuple(rules)
        self._clock = clock
        self._metrics = metrics
        self._runner = RuleRunner(
            self._rules, sample_size=sample_size, clock=clock, sessions=sessions
        )

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
            report.outcomes = self._runner.run(uow, window, fix=fix, on_rule=on_rule)
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
            report.errors.append({"rule": "notifications", "message": describe_error(exc)})


#: Built once: a run's row is its parameters.
_INSERT_RUN = insert(check_runs).returning(check_runs.c.id)


def _keep_run(session: Session, report: RunReport, *, trigger: str) -> int:
    """The finished run as one ``check_runs`` row, written with its findings (one INSERT)."""
    row = {
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "window_since": report.window.since,
        "window_until": report.window.until,
        "status": "failed" if report.errors else "succeeded",
        "trigger": trigger,
        "results": {
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
        "totals": report.totals,
        "auto_corrected": report.auto_corrected,
        "alerts_opened": report.alerts_opened,
        "alerts_resolved": report.alerts_resolved,
        "errors": list(report.errors),
    }
    return int(session.execute(_INSERT_RUN, row).scalar_one())
