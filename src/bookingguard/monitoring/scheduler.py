"""Scheduled work with APScheduler: check, delivery, report, retention, partitions, reconcile.

Every job runs under a lease (``locks``), so with N replicas exactly one runs
each job per interval. The daily report runs at ``monitoring.report_time`` (UTC,
a cron trigger), the other jobs at an interval from start, and first at once.
``serve`` calls ``start_background(service, lock)`` and ``scheduler.shutdown()`` on
exit; ``bookingguard worker`` calls ``run_worker``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, time, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import undefined

from bookingguard.monitoring.locks import JobLock
from bookingguard.monitoring.service import MonitoringService

__all__ = ["ScheduledJob", "daily_at", "run_worker", "scheduled_jobs", "start_background"]

log = structlog.get_logger("bookingguard.scheduler")

#: How often pending notifications are looked at.
DELIVERY_INTERVAL = timedelta(seconds=2)
#: How often Cal.com is reconciled (when configured).
RECONCILE_INTERVAL = timedelta(hours=1)


def _leased(
    lock: JobLock, name: str, hold: timedelta, job: Callable[[], Any]
) -> Callable[[], None]:
    def run() -> None:
        lease = lock.acquire(name, hold=hold)
        if lease is None:
            return
        try:
            job()
        except Exception:
            log.exception("scheduled job failed", job=name)
        finally:
            lock.release(lease)

    return run


@dataclass(frozen=True)
class ScheduledJob:
    """When a job runs, how long its lease keeps other replicas off, and the job."""

    trigger: BaseTrigger
    hold: timedelta
    run: Callable[[], Any]
    #: Whether it also runs as the scheduler starts (interval jobs), not only on its trigger.
    at_start: bool = True


def daily_at(moment: time) -> CronTrigger:
    """Every day at ``moment`` (a time of day in UTC)."""
    return CronTrigger(hour=moment.hour, minute=moment.minute, second=moment.second, timezone=UTC)


def _every(interval: timedelta, run: Callable[[], Any]) -> ScheduledJob:
    # The lease is held a little under the interval, so the next tick anywhere may run.
    return ScheduledJob(IntervalTrigger(seconds=interval.total_seconds()), interval * 0.9, run)


def scheduled_jobs(service: MonitoringService) -> dict[str, ScheduledJob]:
    """Name → job for every job that one replica runs per tick."""
    config = service.settings.monitoring
    jobs = {
        "check": _every(
            timedelta(seconds=config.interval_seconds),
            lambda: service.check(trigger="scheduled", fix=True, notify=True),
        ),
        "daily_report": ScheduledJob(
            daily_at(config.report_time),
            timedelta(hours=23),
            service.send_daily_report,
            at_start=False,
        ),
        "prune": _every(timedelta(days=1), service.prune),
        "partitions": _every(timedelta(days=1), service.maintain_partitions),
    }
    if service.booking_source is not None:
        jobs["reconcile"] = _every(
            RECONCILE_INTERVAL, lambda: asyncio.run(service.reconcile_calcom())
        )
    return jobs


def start_background(
    service: MonitoringService, lock: JobLock | None = None
) -> BackgroundScheduler:
    """Start every job in background threads; call ``.shutdown()`` on the result to stop.

    Delivery runs on every replica: each outbox row is claimed by one of them.
    """
    chosen = lock or service.lock
    if chosen is None:
        raise ValueError("no job lock: build the service with bootstrap.build_monitoring")
    scheduler = BackgroundScheduler(timezone="UTC")
    for name, job in scheduled_jobs(service).items():
        scheduler.add_job(
            _leased(chosen, name, job.hold, job.run),
            job.trigger,
            id=name,
            max_instances=1,
            coalesce=True,
            # ``undefined``: the trigger alone decides the first run.
            next_run_time=service.clock() if job.at_start else undefined,
        )
    scheduler.add_job(
        service.delivery.deliver_due,
        "interval",
        seconds=DELIVERY_INTERVAL.total_seconds(),
        id="deliver",
        max_instances=1,
        coalesce=True,
        next_run_time=service.clock(),
    )
    scheduler.start()
    return scheduler


def run_worker(
    service: MonitoringService,
    *,
    lock: JobLock | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the scheduled jobs until ``stop`` is set (``bookingguard worker``)."""
    event = stop or threading.Event()
    scheduler = start_background(service, lock)
    log.info("worker started", jobs=sorted(scheduled_jobs(service)))
    try:
        event.wait()
    finally:
        scheduler.shutdown(wait=True)
