"""Prometheus metrics of the monitor and the outbox, built from ``metrics_catalog``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import ConsistencyAlert, ManualReviewItem, NotificationOutbox
from bookingguard.metrics_catalog import CATALOG, counter, gauge, histogram
from bookingguard.monitoring.rules import RULES

if TYPE_CHECKING:
    from bookingguard.monitoring.alerting import RuleOutcome

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    """The monitor's collectors, registered on the registry given (``/metrics`` serves it).

    Every rule's series start at zero (with the rule's severity), so an alert or a
    panel on one rule has a series to read before that rule first finds anything.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.findings = counter("bookingguard_inconsistencies_detected_total", registry)
        self.auto_corrections = counter("bookingguard_auto_corrections_total", registry)
        self.rule_errors = counter("bookingguard_rule_errors_total", registry)
        self.run_duration = histogram("bookingguard_check_duration_seconds", registry)
        self.open_alerts = gauge("bookingguard_open_alerts", registry)
        self.notifications = counter("bookingguard_notifications_total", registry)
        self.outbox_backlog = gauge("bookingguard_outbox_backlog", registry)
        self.review_queue_size = gauge("bookingguard_review_queue_size", registry)
        self._rule_severities = {(rule.name, rule.severity) for rule in RULES}
        self._open_alert_labels = set(self._rule_severities)
        for name, severity in self._rule_severities:
            self.findings.labels(rule=name, severity=severity)
            self.auto_corrections.labels(rule=name)
            self.rule_errors.labels(rule=name)
            self.open_alerts.labels(rule=name, severity=severity)

    def observe_run(self, outcomes: Iterable[RuleOutcome], seconds: float) -> None:
        for outcome in outcomes:
            if outcome.errored:
                self.rule_errors.labels(rule=outcome.alert_type).inc()
                continue
            self.findings.labels(rule=outcome.alert_type, severity=outcome.severity).inc(
                outcome.count
            )
            if outcome.corrected:
                self.auto_corrections.labels(rule=outcome.alert_type).inc(outcome.corrected)
        self.run_duration.observe(seconds)

    def delivery(self, channel: str, ok: bool) -> None:
        self.notifications.labels(channel=channel, outcome="sent" if ok else "failed").inc()

    def refresh_gauges(self, sessions: sessionmaker[Session]) -> None:
        """Read open alerts, outbox backlog and review queue size from the database.

        Every label pair set before is set again (to zero when it has no alert left),
        so a resolved alert's series drops to 0 instead of keeping its last count.
        """
        with sessions() as session:
            open_alerts = {
                (str(rule), str(severity)): int(count)
                for rule, severity, count in session.execute(
                    select(ConsistencyAlert.alert_type, ConsistencyAlert.severity, func.count())
                    .where(ConsistencyAlert.status.in_(("open", "acknowledged")))
                    .group_by(ConsistencyAlert.alert_type, ConsistencyAlert.severity)
                )
            }
            self._open_alert_labels |= open_alerts.keys()
            for rule, severity in self._open_alert_labels:
                self.open_alerts.labels(rule=rule, severity=severity).set(
                    open_alerts.get((rule, severity), 0)
                )
            backlog = dict.fromkeys(CATALOG["bookingguard_outbox_backlog"].known["channel"], 0)
            for channel, count in session.execute(
                select(NotificationOutbox.channel, func.count())
                .where(NotificationOutbox.status == "pending")
                .group_by(NotificationOutbox.channel)
            ):
                backlog[str(channel)] = int(count)
            for channel, count in backlog.items():
                self.outbox_backlog.labels(channel=channel).set(count)
            self.review_queue_size.set(
                session.scalar(
                    select(func.count()).where(
                        ManualReviewItem.status.in_(("pending", "in_progress"))
                    )
                )
                or 0
            )
