"""The daily report, computed from the calls, appointments, alerts, review queue and runs.

Its numbers count different sets, and ``labels`` says which, in the JSON and the text:
the period's calls found inconsistent (``inconsistency``: whenever their alerts were
raised) are not the alerts opened in the period (by type). A day's calls flagged the
next morning count on their day, and in the next day's alerts; the consistency rate is
the share of the period's calls not found inconsistent, always between 0 and 100.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bookingguard.db.models import (
    Appointment,
    Call,
    CheckRun,
    ConsistencyAlert,
    ManualReviewItem,
)
from bookingguard.monitoring.inconsistency import (
    INCONSISTENCY_SEVERITIES,
    INCONSISTENT_CALL,
    inconsistent_calls,
)

__all__ = ["INCONSISTENCY_SEVERITIES", "LABELS", "daily_report", "render_html", "render_text"]

#: What each number of the report counts, by its place in the report ("section.key").
LABELS: dict[str, str] = {
    "summary.total_calls": "calls created in the period",
    "summary.total_appointments": "appointments created in the period",
    "summary.inconsistent_calls": (
        f"calls created in the period found inconsistent ({INCONSISTENT_CALL})"
    ),
    "summary.consistency_rate_pct": (
        "consistency rate, % of the calls created in the period not found inconsistent"
    ),
    "inconsistencies_by_type": "alerts opened in the period, by type (any severity or status)",
    "resolution.auto_corrected": "alerts opened in the period and auto-corrected",
    "resolution.manual_review": "review items filed in the period",
    "runs": "check runs started in the period, by status",
    "top_issues": "top issues among the alerts opened in the period, most severe first",
}


def daily_report(session: Session, *, day: date, days: int = 1, top: int = 5) -> dict[str, Any]:
    """The report for ``days`` days starting at ``day`` 00:00 UTC, as a JSON-ready dict."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    end = start + timedelta(days=days)
    total_calls = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(Call.created_at >= start, Call.created_at < end)
    )
    total_appointments = session.scalar(
        select(func.count())
        .select_from(Appointment)
        .where(Appointment.created_at >= start, Appointment.created_at < end)
    )
    calls = int(total_calls or 0)
    inconsistent = min(inconsistent_calls(session, since=start, until=end), calls)
    rate = 100.0 if calls == 0 else round((calls - inconsistent) / calls * 100, 2)
    in_period_alerts = (ConsistencyAlert.detected_at >= start, ConsistencyAlert.detected_at < end)
    by_type_rows = session.execute(
        select(
            ConsistencyAlert.alert_type,
            ConsistencyAlert.severity,
            func.count(),
            func.sum(ConsistencyAlert.occurrences),
        )
        .where(*in_period_alerts)
        .group_by(ConsistencyAlert.alert_type, ConsistencyAlert.severity)
    ).all()
    by_type: dict[str, dict[str, Any]] = {
        alert_type: {"severity": severity, "count": int(count), "occurrences": int(seen or 0)}
        for alert_type, severity, count, seen in by_type_rows
    }
    auto_corrected = session.scalar(
        select(func.count())
        .select_from(ConsistencyAlert)
        .where(*in_period_alerts, ConsistencyAlert.auto_corrected.is_(True))
    )
    sent_to_review = session.scalar(
        select(func.count())
        .select_from(ManualReviewItem)
        .where(ManualReviewItem.created_at >= start, ManualReviewItem.created_at < end)
    )
    runs = session.execute(
        select(CheckRun.status, func.count())
        .where(CheckRun.started_at >= start, CheckRun.started_at < end)
        .group_by(CheckRun.status)
    ).all()
    severity_rank = {"critical": 0, "warning": 1, "info": 2}
    ranked = sorted(
        by_type.items(),
        key=lambda item: (severity_rank.get(item[1]["severity"], 3), -item[1]["count"]),
    )
    top_issues = [{"alert_type": name, **values} for name, values in ranked[:top]]
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
        "summary": {
            "total_calls": calls,
            "total_appointments": int(total_appointments or 0),
            "inconsistent_calls": inconsistent,
            "consistency_rate_pct": rate,
        },
        "inconsistencies_by_type": by_type,
        "resolution": {
            "auto_corrected": int(auto_corrected or 0),
            "manual_review": int(sent_to_review or 0),
        },
        "runs": {status: int(count) for status, count in runs},
        "top_issues": top_issues,
        "labels": dict(LABELS),
    }


def _numbers(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's single numbers as (label, value) pairs, in reading order."""
    summary, resolution, labels = report["summary"], report["resolution"], report["labels"]
    runs = report["runs"]
    return [
        (labels["summary.total_calls"], str(summary["total_calls"])),
        (labels["summary.total_appointments"], str(summary["total_appointments"])),
        (labels["summary.inconsistent_calls"], str(summary["inconsistent_calls"])),
        (labels["summary.consistency_rate_pct"], f"{summary['consistency_rate_pct']:.2f} %"),
        (labels["resolution.auto_corrected"], str(resolution["auto_corrected"])),
        (labels["resolution.manual_review"], str(resolution["manual_review"])),
        (
            labels["runs"],
            ", ".join(f"{status} {count}" for status, count in sorted(runs.items())) or "none",
        ),
    ]


def render_text(report: dict[str, Any]) -> str:
    """The report as plain text: each number after the label saying what it counts."""
    labels = report["labels"]
    lines = [f"bookingguard daily report {report['period']['start']} - {report['period']['end']}"]
    lines += [f"{label}: {value}" for label, value in _numbers(report)]
    lines.append(f"{labels['inconsistencies_by_type']}:")
    for name, values in sorted(report["inconsistencies_by_type"].items()):
        lines.append(f"  {name} ({values['severity']}): {values['count']}")
    if not report["inconsistencies_by_type"]:
        lines.append("  none")
    top = ", ".join(issue["alert_type"] for issue in report["top_issues"]) or "none"
    lines.append(f"{labels['top_issues']}: {top}")
    return "\n".join(lines)


def render_html(report: dict[str, Any]) -> str:
    """The report as an HTML page, labelled as the text is."""
    numbers = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in _numbers(report)
    )
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(v['severity'])}</td>"
        f"<td>{v['count']}</td></tr>"
        for name, v in sorted(report["inconsistencies_by_type"].items())
    )
    by_type = html.escape(report["labels"]["inconsistencies_by_type"])
    return (
        "<html><body>"
        f"<h1>Daily report {html.escape(report['period']['start'])}</h1>"
        f"<table>{numbers}</table>"
        f"<h2>{by_type}</h2>"
        f"<table><tr><th>type</th><th>severity</th><th>count</th></tr>{rows}</table>"
        "</body></html>"
    )
