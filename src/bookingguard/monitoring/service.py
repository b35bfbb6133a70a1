"""The monitoring service: one object the CLI, the API and ``serve`` use.

Built by ``bootstrap.build_monitoring(settings, engine)``. Every method opens
and commits its own unit of work and returns plain values (dicts for the API).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bookingguard.clock import utc_now
from bookingguard.db.uow import UnitOfWork
from bookingguard.errors import BookingGuardError
from bookingguard.monitoring import admin
from bookingguard.monitoring.alerting import AlertPolicy
from bookingguard.monitoring.locks import JobLock, Lease
from bookingguard.monitoring.metrics import MonitorMetrics
from bookingguard.monitoring.reconcile import BookingSource, Reconciler, ReconcileReport
from bookingguard.monitoring.report import daily_report
from bookingguard.monitoring.rules import Window
from bookingguard.monitoring.runner import Monitor, RunReport
from bookingguard.notify.channels import Channel, channels_from_settings
from bookingguard.notify.delivery import DeliveryStats, OutboxDelivery
from bookingguard.notify.outbox import Message, enqueue
from bookingguard.settings import Settings

__all__ = [
    "BookingSourceFactory",
    "MonitorBusyError",
    "MonitoringService",
    "ReconcileUnavailableError",
]

WRITER_LOCK = "check-writer"
WRITER_WAIT_SECONDS = 60.0


#: Opens a ``BookingSource`` for one reconciliation (a Cal.com client and its connections).
BookingSourceFactory = Callable[[], AbstractAsyncContextManager[BookingSource]]


class ReconcileUnavailableError(BookingGuardError):
    """No Cal.com to reconcile with."""

    code = "reconcile_unavailable"


class MonitorBusyError(BookingGuardError):
    """Another run holds the writer lock."""

    code = "monitor_busy"


class MonitoringService:
    """Checks, alerts, silences, delivery, retention and the daily report."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        channels: Mapping[str, Channel] | None = None,
        metrics: MonitorMetrics | None = None,
        lock: JobLock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        booking_source: BookingSourceFactory | None = None,
    ) -> None:
        self.sessions = sessions
        self.lock = lock
        self.booking_source = booking_source
        self._sleep = sleep
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        config = settings.monitoring
        self.channels = dict(
            channels if channels is not None else channels_from_settings(settings.alerts)
        )
        self.policy = AlertPolicy(
            channels=tuple(self.channels),
            throttle=timedelta(minutes=config.alert_throttle_minutes),
            repeat_interval=timedelta(hours=config.repeat_interval_hours),
            sample_size=config.sample_size,
            dashboard_url=config.dashboard_url,
        )
        self.monitor = Monitor(
            sessions,
            policy=self.policy,
            recent_hours=config.recent_hours,
            sample_size=config.sample_size,
            clock=clock,
            metrics=metrics,
        )
        self.delivery = OutboxDelivery(
            sessions,
            self.channels,
            clock=clock,
            lease=timedelta(seconds=config.delivery_lease_seconds),
            on_result=metrics.delivery if metrics is not None else None,
        )

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
        """One monitor run; ``report.to_dict()`` is the ``check --json`` document.

        With a lock, runs are serialised across processes (one writer keeps one open
        alert per fingerprint); ``MonitorBusyError`` if another run holds it too long.
        """
        lease = self._writer_lease()
        try:
            return self.monitor.check(
                since=since,
                scan_all=scan_all,
                fix=fix,
                notify=notify,
                trigger=trigger,
                on_rule=on_rule,
            )
        finally:
            if self.lock is not None and lease is not None:
                self.lock.release(lease)

    def _writer_lease(self) -> Lease | None:
        if self.lock is None:
            return None
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while True:
            lease = self.lock.acquire(WRITER_LOCK, hold=timedelta(0))
            if lease is not None:
                return lease
            if time.monotonic() >= deadline:
                raise MonitorBusyError("another monitor run holds the writer lock; try again")
            self._sleep(0.2)

    def deliver(self, *, timeout_seconds: float = 30.0) -> DeliveryStats:
        """Deliver what is due now (``check`` calls this before it exits)."""
        return self.delivery.drain(timeout_seconds=timeout_seconds)

    def list_alerts(
        self,
        *,
        status: tuple[str, ...] = ("open", "acknowledged"),
        alert_type: str | None = None,
        severity: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        query = admin.AlertQuery(
            status=status, alert_type=alert_type, severity=severity, limit=limit
        )
        with UnitOfWork(self.sessions) as uow:
            return [admin.alert_as_dict(a) for a in admin.list_alerts(uow.session, query)]

    def alerts_page(
        self,
        *,
        statuses: tuple[str, ...] = (),
        alert_type: str | None = None,
        severity: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of alerts, newest first, and the next page's cursor (``None`` at the end)."""
        with UnitOfWork(self.sessions) as uow:
            page = admin.page_alerts(
                uow.session,
                statuses=statuses,
                alert_type=alert_type,
                severity=severity,
                since=since,
                before_id=before_id,
                limit=limit,
            )
            return [admin.alert_as_dict(a) for a in page.alerts], page.next_cursor

    def consistency(self) -> dict[str, Any]:
        """The latest check run (``None`` before the first) and open alerts per severity."""
        with UnitOfWork(self.sessions) as uow:
            run = admin.latest_run(uow.session)
            latest = None
            if run is not None:
                latest = {
                    "run_id": run.id,
                    "status": run.status,
                    "trigger": run.trigger,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "window": {"since": run.window_since, "until": run.window_until},
                    "totals": dict(run.totals or {}),
                    "auto_corrected": run.auto_corrected,
                    "alerts_opened": run.alerts_opened,
                    "alerts_resolved": run.alerts_resolved,
                    "errors": list(run.errors or []),
                }
            return {"latest_run": latest, "open_alerts": admin.open_alert_totals(uow.session)}

    def acknowledge(self, alert_id: int, *, by: str) -> dict[str, Any]:
        with UnitOfWork(self.sessions) as uow:
            alert = admin.acknowledge(uow.session, alert_id, by=by, now=self.clock())
            uow.commit()
            return admin.alert_as_dict(alert)

    def resolve(self, alert_id: int, *, by: str) -> dict[str, Any]:
        with UnitOfWork(self.sessions) as uow:
            alert = admin.resolve(uow.session, alert_id, by=by, now=self.clock())
            uow.commit()
            return admin.alert_as_dict(alert)

    def silence(
        self,
        *,
        author: str,
        comment: str,
        duration: timedelta,
        alert_type: str | None = None,
        entity_type: str | None = None,
        entity_id: int | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        with UnitOfWork(self.sessions) as uow:
            silence = admin.create_silence(
                uow.session,
                author=author,
                comment=comment,
                expires_at=now + duration,
                now=now,
                alert_type=alert_type,
                entity_type=entity_type,
                entity_id=entity_id,
            )
            uow.commit()
            return admin.silence_as_dict(silence)

    def silences(self) -> list[dict[str, Any]]:
        with UnitOfWork(self.sessions) as uow:
            return [
                admin.silence_as_dict(s) for s in admin.list_silences(uow.session, now=self.clock())
            ]

    def prune(self, *, retention_days: int | None = None) -> int:
        """Delete resolved or auto-corrected alerts older than the retention."""
        days = retention_days or self.settings.monitoring.retention_days
        with UnitOfWork(self.sessions) as uow:
            count = admin.prune(uow.session, retention=timedelta(days=days), now=self.clock())
            uow.commit()
            return count

    def maintain_partitions(self) -> int:
        with UnitOfWork(self.sessions) as uow:
            created = admin.ensure_partitions(uow.session, today=self.clock().date())
            uow.commit()
            return created

    async def reconcile(
        self,
        source: BookingSource,
        *,
        since: timedelta = timedelta(hours=24),
        ahead: timedelta = timedelta(days=30),
        notify: bool = True,
    ) -> ReconcileReport:
        """Compare bookings starting in [now - since, now + ahead) with Cal.com; alert on drift."""
        config = self.settings.monitoring
        reconciler = Reconciler(
            self.sessions,
            source,
            clock=self.clock,
            grace=timedelta(minutes=config.reconcile_grace_minutes),
            bucket=timedelta(hours=config.reconcile_bucket_hours),
        )
        now = self.clock()
        report = await reconciler.reconcile(since=now - since, until=now + ahead)
        self.monitor.keep(
            RunReport(
                run_id=0,
                started_at=now,
                finished_at=self.clock(),
                window=Window(since=report.window_since, until=report.window_until),
                outcomes={outcome.alert_type: outcome for outcome in report.outcomes},
            ),
            trigger="reconcile",
        )
        self.monitor.record_outcomes(report.outcomes, notify=notify)
        return report

    async def reconcile_calcom(
        self,
        *,
        since: timedelta = timedelta(hours=24),
        ahead: timedelta = timedelta(days=30),
        notify: bool = True,
    ) -> ReconcileReport:
        """``reconcile`` against the configured Cal.com (``ReconcileUnavailableError`` if none)."""
        if self.booking_source is None:
            raise ReconcileUnavailableError(
                "Cal.com is not configured (BOOKINGGUARD_CALCOM__API_KEY)"
            )
        async with self.booking_source() as source:
            return await self.reconcile(source, since=since, ahead=ahead, notify=notify)

    def send_daily_report(self, *, day: date | None = None) -> dict[str, Any]:
        """Build the daily report and queue it on every channel (the daily job)."""
        report = self.daily_report(day=day)
        summary = report["summary"]
        message = Message(
            kind="daily_report",
            subject=(
                f"Daily report {report['period']['start'][:10]}: "
                f"{summary['consistency_rate_pct']:.2f} % consistent"
            ),
            severity="info",
            body={
                **summary,
                "auto_corrected": report["resolution"]["auto_corrected"],
                "manual_review": report["resolution"]["manual_review"],
                "top_issues": ", ".join(i["alert_type"] for i in report["top_issues"]) or "none",
                "dashboard_url": self.settings.monitoring.dashboard_url,
            },
        )
        with UnitOfWork(self.sessions) as uow:
            enqueue(uow.session, message, now=self.clock(), channels=self.policy.channels)
            uow.commit()
        return report

    def daily_report(self, *, day: date | None = None, days: int | None = None) -> dict[str, Any]:
        """The report for ``day`` (default yesterday, UTC) as a JSON-ready dict."""
        chosen = day or (self.clock().date() - timedelta(days=1))
        with UnitOfWork(self.sessions) as uow:
            return daily_report(
                uow.session, day=chosen, days=days or self.settings.monitoring.report_days
            )
