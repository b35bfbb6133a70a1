"""Daily report, retention pruning, partitions and metrics, on both dialects."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry

from bookingguard.db.alerts import record_alert
from bookingguard.monitoring import AlertPolicy, Monitor
from bookingguard.monitoring.admin import prune
from bookingguard.monitoring.metrics import MonitorMetrics
from bookingguard.monitoring.report import daily_report
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import NOW, Clock, add_call, booked_call, play_legacy


def test_rate_ignores_info_rows_and_stays_within_bounds(database: TestDatabase) -> None:
    """Many info and linked records on one call never push the rate below 0 or count twice."""
    play_legacy(database)
    with database.engine.begin() as connection:
        ok = booked_call(connection, "ok")
        phantom = add_call(
            connection, "p", appointment_made=True, session_outcome="appointment_booked"
        )
    with database.sessions.begin() as session:
        for index in range(5):
            record_alert(
                session,
                alert_type=f"appointment_linked_{index}",
                entity_type="call",
                entity_id=ok,
                description="linked",
                now=NOW,
                severity="info",
            )
    Monitor(database.sessions, policy=AlertPolicy(), clock=Clock()).check(notify=False)
    Monitor(database.sessions, policy=AlertPolicy(), clock=Clock(NOW + timedelta(minutes=1))).check(
        notify=False
    )
    with database.sessions() as session:
        report = daily_report(session, day=NOW.date())
    assert report["summary"] == {
        "total_calls": 2,
        "total_appointments": 1,
        "inconsistent_calls": 1,
        "consistency_rate_pct": 50.0,
    }
    assert report["inconsistencies_by_type"]["missing_appointment"]["occurrences"] == 2
    assert report["resolution"]["manual_review"] == 1
    assert report["top_issues"][0]["alert_type"] == "missing_appointment"
    assert report["runs"] == {"succeeded": 2}
    assert phantom != ok


def test_empty_day_reports_full_consistency(database: TestDatabase) -> None:
    """A day with no calls has a 100 % rate, not a division by zero."""
    with database.sessions() as session:
        report = daily_report(session, day=NOW.date())
    assert report["summary"]["consistency_rate_pct"] == 100.0


def test_prune_removes_only_old_resolved_or_corrected_alerts(database: TestDatabase) -> None:
    """Resolved and auto-corrected alerts past retention go; open and recent ones stay."""
    old = NOW - timedelta(days=120)
    with database.sessions.begin() as session:
        for name, status, corrected, at in [
            ("old-resolved", "resolved", False, old),
            ("old-corrected", "resolved", True, old),
            ("old-open", "open", False, old),
            ("new-resolved", "resolved", False, NOW),
        ]:
            alert = record_alert(
                session, alert_type=name, entity_type="call", entity_id=1, description="", now=at
            )
            alert.status, alert.auto_corrected = status, corrected
    with database.sessions.begin() as session:
        assert prune(session, retention=timedelta(days=90), now=NOW) == 2
    with database.sessions() as session:
        from bookingguard.db.models import ConsistencyAlert

        left = sorted(a.alert_type for a in session.query(ConsistencyAlert))
    assert left == ["new-resolved", "old-open"]


def test_metrics_count_findings_and_gauges(database: TestDatabase) -> None:
    """A run exports findings and open alerts by rule and severity, and review queue size."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(connection, "p", appointment_made=True, session_outcome="appointment_booked")
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry)
    Monitor(database.sessions, policy=AlertPolicy(), clock=Clock(), metrics=metrics).check(
        notify=False
    )
    value = registry.get_sample_value
    labels = {"rule": "missing_appointment", "severity": "critical"}
    assert value("bookingguard_inconsistencies_detected_total", labels) == 1
    assert value("bookingguard_open_alerts", labels) == 1
    assert value("bookingguard_review_queue_size") == 1
    assert value("bookingguard_check_duration_seconds_count") == 1
