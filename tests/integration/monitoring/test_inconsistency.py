"""One definition of an inconsistent call: the report, the dashboard and the API agree."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import httpx

from bookingguard.api.dashboard import queries
from bookingguard.api.server import build_server_app
from bookingguard.db.alerts import record_alert
from bookingguard.monitoring.report import LABELS, daily_report, render_html, render_text
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import NOW, add_call
from tests.operator_support import make_token, running_server

DAY = NOW.date()
MIDNIGHT = datetime.combine(DAY, time(0), tzinfo=UTC)


def seed_day(database: TestDatabase) -> None:
    """Six calls of DAY, three of them inconsistent by the definition, and one the day before.

    Inconsistent: a critical alert still open, a warning alert resolved since, and a
    critical alert raised the next morning. Not: an info alert only, no alert at all,
    and a call of the day before with a critical alert of DAY.
    """
    with database.engine.begin() as connection:
        calls = {
            name: add_call(connection, name, created_at=MIDNIGHT + timedelta(hours=hour))
            for hour, name in enumerate(
                ["open", "resolved", "next_day", "info", "clean", "also_clean"], start=1
            )
        }
        calls["day_before"] = add_call(
            connection, "day_before", created_at=MIDNIGHT - timedelta(hours=1)
        )
    alerts = [
        ("open", "missing_appointment", None, MIDNIGHT + timedelta(hours=2)),
        ("resolved", "missing_direction", None, MIDNIGHT + timedelta(hours=3)),
        ("next_day", "missing_appointment", None, MIDNIGHT + timedelta(days=1, hours=8)),
        ("info", "recent_failures", "info", MIDNIGHT + timedelta(hours=5)),
        ("day_before", "missing_appointment", None, MIDNIGHT + timedelta(hours=1)),
    ]
    with database.sessions.begin() as session:
        for call, alert_type, severity, at in alerts:
            alert = record_alert(
                session,
                alert_type=alert_type,
                entity_type="call",
                entity_id=calls[call],
                description=alert_type,
                now=at,
                severity=severity,
            )
            if call == "resolved":
                alert.status, alert.resolved_at = "resolved", at + timedelta(minutes=1)


def test_report_dashboard_and_api_count_the_same_inconsistent_calls(
    database: TestDatabase,
) -> None:
    """For the same day and data, all three say 3 of the day's 6 calls are inconsistent."""
    seed_day(database)
    with database.sessions() as session:
        report = daily_report(session, day=DAY)
        dashboard = queries.day_rates(session, now=MIDNIGHT + timedelta(hours=23))[-1]
    token = make_token(database, "reader", "read")
    app = build_server_app(Settings(database_url=database.url), engine=database.engine)
    with running_server(app) as base_url:
        response = httpx.get(
            f"{base_url}/api/v1/reports/daily",
            params={"date": DAY.isoformat()},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    assert response.status_code == 200
    api = response.json()
    assert dashboard.day == DAY
    assert (report["summary"]["total_calls"], report["summary"]["inconsistent_calls"]) == (6, 3)
    assert (dashboard.calls, dashboard.inconsistent) == (6, 3)
    assert (api["summary"]["total_calls"], api["summary"]["inconsistent_calls"]) == (6, 3)
    assert report["summary"]["consistency_rate_pct"] == dashboard.rate == 50.0
    assert api["summary"]["consistency_rate_pct"] == 50.0
    assert api["labels"] == report["labels"]


def test_report_labels_say_what_each_number_counts(database: TestDatabase) -> None:
    """Every number has a label in the JSON and is printed after it in the text and HTML.

    The day's calls flagged the next morning count as inconsistent on their day, while
    the alerts opened in the day, by type, are only those raised that day: the labels
    say so instead of printing two unexplained numbers side by side.
    """
    seed_day(database)
    with database.sessions() as session:
        report = daily_report(session, day=DAY)
    numbered = {f"summary.{key}" for key in report["summary"]} | {
        f"resolution.{key}" for key in report["resolution"]
    }
    assert numbered | {"inconsistencies_by_type", "runs", "top_issues"} == set(report["labels"])
    assert report["labels"] == LABELS
    text = render_text(report)
    lines = text.splitlines()
    assert f"{LABELS['summary.total_calls']}: 6" in lines
    assert f"{LABELS['summary.inconsistent_calls']}: 3" in lines
    assert "raised at any time, open or resolved" in LABELS["summary.inconsistent_calls"]
    assert f"{LABELS['summary.consistency_rate_pct']}: 50.00 %" in lines
    by_type = lines.index(f"{LABELS['inconsistencies_by_type']}:")
    assert lines[by_type + 1 : by_type + 4] == [
        "  missing_appointment (critical): 2",
        "  missing_direction (warning): 1",
        "  recent_failures (info): 1",
    ]
    page = render_html(report)
    for label in LABELS.values():
        assert label in page or label in text
    assert "calls created in the period found inconsistent" in page
