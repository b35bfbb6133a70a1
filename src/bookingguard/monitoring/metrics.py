"""Prometheus metrics of the monitor and the outbox; labels stay bounded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import ConsistencyAlert, ManualReviewItem, NotificationOutbox

if TYPE_CHECKING:
    from bookingguard.monitoring.alerting import RuleOutcome

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    """The monitor's collectors, registered on the registry given (``/metrics`` serves it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.findings = Counter(
            "bookingguard_inconsistencies_detected_total",
            "Findings per monitor run, by rule and severity.",
            ["rule", "severity"],
            registry=registry,
        )
        self.auto_corrections = Counter(
            "bookingguard_auto_corrections_total",
            "Rows auto-corrected by the monitor, by rule.",
            ["rule"],
            registry=registry,
        )
        self.rule_errors = Counter(
            "bookingguard_rule_errors_total",
            "Rules that raised during a run.",
            ["rule"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "bookingguard_check_duration_seconds",
            "Duration of a whole monitor run.",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.open_alerts = Gauge(
            "bookingguard_open_alerts",
            "Alerts open or acknowledged, by severity.",
            ["severity"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.notifications = Counter(
            "bookingguard_notifications_total",
            "Notification deliveries by channel and outcome (sent, failed).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "bookingguard_outbox_backlog",
            "Outbox messages waiting for delivery, by channel.",
            ["channel"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.review_queue_size = Gauge(
            "bookingguard_review_queue_size",
            "Open manual review items.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )

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
        """Read open alerts, outbox backlog and review queue size from the database."""
        with sessions() as session:
            open_by_severity = dict.fromkeys(("critical", "warning", "info"), 0)
            for severity, count in session.execute(
                select(ConsistencyAlert.severity, func.count())
                .where(ConsistencyAlert.status.in_(("open", "acknowledged")))
                .group_by(ConsistencyAlert.severity)
            ):
                open_by_severity[severity] = int(count)
            for severity, count in open_by_severity.items():
                self.open_alerts.labels(severity=severity).set(count)
            backlog = session.execute(
                select(NotificationOutbox.channel, func.count())
                .where(NotificationOutbox.status == "pending")
                .group_by(NotificationOutbox.channel)
            ).all()
            for channel in ("slack", "email", "log"):
                self.outbox_backlog.labels(channel=channel).set(0)
            for channel, count in backlog:
                self.outbox_backlog.labels(channel=channel).set(int(count))
            self.review_queue_size.set(
                session.scalar(
                    select(func.count()).where(
                        ManualReviewItem.status.in_(("pending", "in_progress"))
                    )
                )
                or 0
            )
