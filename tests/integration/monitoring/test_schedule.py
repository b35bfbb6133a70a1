"""The timetable: the daily report at monitoring.report_time (UTC), the other jobs by interval."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

from apscheduler.triggers.interval import IntervalTrigger

from bookingguard.bootstrap import build_monitoring
from bookingguard.monitoring.locks import Lease
from bookingguard.monitoring.scheduler import daily_at, scheduled_jobs, start_background
from bookingguard.settings import Settings
from tests.conftest import TestDatabase


class NoLease:
    """A job lock that another replica always holds: no leased job runs here."""

    def acquire(self, name: str, *, hold: timedelta) -> Lease | None:
        return None

    def release(self, lease: Lease) -> None:
        raise AssertionError("nothing was leased")


def _settings(database: TestDatabase, tmp_path: Path, report_time: str) -> Settings:
    return Settings(
        database_url=database.url,
        monitoring={"report_time": report_time, "lock_dir": str(tmp_path)},
    )


def test_daily_trigger_fires_at_the_time_of_day_in_utc() -> None:
    """Before 06:00 UTC the next run is today's 06:00; after it, tomorrow's."""
    trigger = daily_at(time(6, 0))
    before = datetime(2025, 3, 1, 5, 59, tzinfo=UTC)
    after = datetime(2025, 3, 1, 6, 0, 1, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, before) == datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, after) == datetime(2025, 3, 2, 6, 0, tzinfo=UTC)


def test_daily_trigger_ignores_the_local_time_zone() -> None:
    """At 07:30 in UTC+02:00 (05:30 UTC) the 06:00 report is half an hour away."""
    local = datetime(2025, 3, 1, 7, 30, tzinfo=timezone(timedelta(hours=2)))
    fire = daily_at(time(6, 0)).get_next_fire_time(None, local)
    assert fire - local == timedelta(minutes=30)
    assert fire.astimezone(UTC).time() == time(6, 0)


def test_report_job_follows_the_setting(sqlite_database: TestDatabase, tmp_path: Path) -> None:
    """monitoring.report_time sets the report's trigger; it does not run at start."""
    service = build_monitoring(
        _settings(sqlite_database, tmp_path, "23:30"), sqlite_database.engine
    )
    jobs = scheduled_jobs(service)
    report = jobs["daily_report"]
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert report.trigger.get_next_fire_time(None, now) == datetime(2025, 3, 1, 23, 30, tzinfo=UTC)
    assert report.at_start is False
    assert report.hold < timedelta(days=1)
    assert isinstance(jobs["check"].trigger, IntervalTrigger)
    assert jobs["check"].at_start is True


def test_started_scheduler_waits_for_the_report_time(
    sqlite_database: TestDatabase, tmp_path: Path
) -> None:
    """Started, the scheduler plans the report at its time of day, not at start."""
    service = build_monitoring(
        _settings(sqlite_database, tmp_path, "06:00"), sqlite_database.engine
    )
    scheduler = start_background(service, NoLease())
    try:
        report = scheduler.get_job("daily_report").next_run_time
    finally:
        scheduler.shutdown(wait=True)
    assert report.astimezone(UTC).time() == time(6, 0)
    assert timedelta(0) < report - datetime.now(UTC) <= timedelta(days=1)
