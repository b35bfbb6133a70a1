"""The daily report, computed from the calls, appointments, alerts, review queue and runs.

The consistency rate is the share of the period's calls on which no inconsistency
(critical or warning alert) was found, so it is always between 0 and 100; info
rows and "appointment linked" records never count as inconsistencies.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import distinct, exists, func, literal, select
from sqlalchemy.orm import Session

from bookingguard.db.models import (
    Appointment,
    Call,
    CheckRun,
    ConsistencyAlert,
    ManualReviewItem,
)

__all__ = ["INCONSISTENCY_SEVERITIES", "daily_report", "render_html", "render_text"]

INCONSISTENCY_SEVERITIES = ("critical", "warning")


def daily_report(session: Session, *, day: date, days: int = 1, top: int = 5) -> dict[str, Any]:
    """The report for ``days`` days starting at ``day`` 00:00 UTC, as a JSON-ready dict."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    end = start + timedelta(days=days)
    in_period_calls = (Call.created_at >= start, Call.created_at < end)
    total_calls = session.scalar(select(func.count()).select_from(Call).where(*in_period_calls))
    total_appointments = session.scalar(
        select(func.count())
        .select_from(Appointment)
        .where(Appointment.created_at >= start, Appointment.created_at < end)
    )
    flagged = exists(
        select(literal(1)).where(
            ConsistencyAlert.entity_type == "call",
            ConsistencyAlert.entity_id == Call.id,
            ConsistencyAlert.severity.in_(INCONSISTENCY_SEVERITIES),
        )
    )
    inconsistent_calls = session.scalar(
        select(func.count(distinct(Call.id))).where(*in_period_calls, flagged)
    )
    calls = int(total_calls or 0)
    inconsistent = min(int(inconsistent_calls or 0), calls)
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
    }


def render_text(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        f"bookingguard daily report {report['period']['start']} - {report['period']['end']}",
        f"calls: {summary['total_calls']}  appointments: {summary['total_appointments']}",
        f"inconsistent calls: {summary['inconsistent_calls']}  "
        f"consistency rate: {summary['consistency_rate_pct']:.2f} %",
        f"auto-corrected: {report['resolution']['auto_corrected']}  "
        f"sent to review: {report['resolution']['manual_review']}",
        "findings by type:",
    ]
    for name, values in sorted(report["inconsistencies_by_type"].items()):
        lines.append(f"  {name} ({values['severity']}): {values['count']}")
    if not report["inconsistencies_by_type"]:
        lines.append("  none")
    lines.append("top issues: " + ", ".join(i["alert_type"] for i in report["top_issues"]))
    return "\n".join(lines)


def render_html(report: dict[str, Any]) -> str:
    summary = report["summary"]
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(v['severity'])}</td>"
        f"<td>{v['count']}</td></tr>"
        for name, v in sorted(report["inconsistencies_by_type"].items())
    )
    return (
        "<html><body>"
        f"<h1>Daily report {html.escape(report['period']['start'])}</h1>"
        f"<p>Calls: {summary['total_calls']}, appointments: {summary['total_appointments']}, "
        f"inconsistent calls: {summary['inconsistent_calls']}, "
        f"consistency rate: {summary['consistency_rate_pct']:.2f} %</p>"
        f"<p>Auto-corrected: {report['resolution']['auto_corrected']}, "
        f"sent to review: {report['resolution']['manual_review']}</p>"
        f"<table><tr><th>type</th><th>severity</th><th>count</th></tr>{rows}</table>"
        "</body></html>"
    )
