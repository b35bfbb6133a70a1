"""Operator actions on alerts: list, acknowledge, resolve, silence, prune; partition upkeep.

Each function takes a session and flushes; the caller's unit of work commits.
``as_dict`` turns rows into plain dicts for the CLI's ``--json`` and the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from bookingguard.db import ddl
from bookingguard.db.models import AlertSilence, CheckRun, ConsistencyAlert
from bookingguard.errors import BookingGuardError

__all__ = [
    "AlertNotFoundError",
    "AlertPage",
    "AlertQuery",
    "acknowledge",
    "alert_as_dict",
    "create_silence",
    "ensure_partitions",
    "expire_silence",
    "latest_run",
    "list_alerts",
    "list_silences",
    "open_alert_totals",
    "page_alerts",
    "prune",
    "resolve",
    "silence_as_dict",
]


class AlertNotFoundError(BookingGuardError):
    """No alert with that id."""

    code = "alert_not_found"


@dataclass(frozen=True)
class AlertQuery:
    status: tuple[str, ...] = ("open", "acknowledged")
    alert_type: str | None = None
    severity: str | None = None
    limit: int = 100


def alert_as_dict(alert: ConsistencyAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "alert_type": alert.alert_type,
        "severity": alert.severity,
        "entity_type": alert.entity_type,
        "entity_id": alert.entity_id,
        "status": alert.status,
        "description": alert.description,
        "fingerprint": alert.fingerprint,
        "occurrences": alert.occurrences,
        "detected_at": alert.detected_at.isoformat() if alert.detected_at else None,
        "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
        "auto_corrected": alert.auto_corrected,
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "metadata": alert.metadata_ or {},
    }


def silence_as_dict(silence: AlertSilence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "alert_type": silence.alert_type,
        "entity_type": silence.entity_type,
        "entity_id": silence.entity_id,
        "author": silence.author,
        "comment": silence.comment,
        "starts_at": silence.starts_at.isoformat(),
        "expires_at": silence.expires_at.isoformat(),
    }


def list_alerts(session: Session, query: AlertQuery = AlertQuery()) -> list[ConsistencyAlert]:
    statement = select(ConsistencyAlert).where(ConsistencyAlert.status.in_(query.status))
    if query.alert_type:
        statement = statement.where(ConsistencyAlert.alert_type == query.alert_type)
    if query.severity:
        statement = statement.where(ConsistencyAlert.severity == query.severity)
    statement = statement.order_by(ConsistencyAlert.detected_at.desc(), ConsistencyAlert.id.desc())
    return list(session.scalars(statement.limit(query.limit)))


@dataclass(frozen=True)
class AlertPage:
    """One page of alerts, newest first; ``next_cursor`` continues after the last one."""

    alerts: list[ConsistencyAlert]
    next_cursor: int | None


def page_alerts(
    session: Session,
    *,
    statuses: tuple[str, ...] = (),
    alert_type: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> AlertPage:
    """Alerts matching every filter given, by id descending (keyset pagination on the id)."""
    statement = select(ConsistencyAlert)
    if statuses:
        statement = statement.where(ConsistencyAlert.status.in_(statuses))
    if alert_type:
        statement = statement.where(ConsistencyAlert.alert_type == alert_type)
    if severity:
        statement = statement.where(ConsistencyAlert.severity == severity)
    if since is not None:
        statement = statement.where(ConsistencyAlert.detected_at >= since)
    if before_id is not None:
        statement = statement.where(ConsistencyAlert.id < before_id)
    rows = list(session.scalars(statement.order_by(ConsistencyAlert.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    return AlertPage(alerts=rows[:limit], next_cursor=rows[limit - 1].id if more else None)


def open_alert_totals(session: Session) -> dict[str, int]:
    """Open or acknowledged alerts per severity (every severity present, zero included)."""
    counts = dict.fromkeys(("critical", "warning", "info"), 0)
    rows = session.execute(
        select(ConsistencyAlert.severity, func.count())
        .where(ConsistencyAlert.status.in_(("open", "acknowledged")))
        .group_by(ConsistencyAlert.severity)
    )
    for severity, count in rows:
        counts[severity] = int(count)
    return counts


def latest_run(session: Session) -> CheckRun | None:
    """The most recently started check run, if any."""
    return session.scalars(
        select(CheckRun).order_by(CheckRun.started_at.desc(), CheckRun.id.desc()).limit(1)
    ).first()


def _get(session: Session, alert_id: int) -> ConsistencyAlert:
    alert = session.scalars(select(ConsistencyAlert).where(ConsistencyAlert.id == alert_id)).first()
    if alert is None:
        raise AlertNotFoundError(f"no alert with id {alert_id}")
    return alert


def acknowledge(session: Session, alert_id: int, *, by: str, now: datetime) -> ConsistencyAlert:
    """Open → acknowledged: it stays deduplicated but is no longer repeated."""
    alert = _get(session, alert_id)
    if alert.status == "open":
        alert.status = "acknowledged"
        alert.acknowledged_at = now
        alert.acknowledged_by = by
        alert.updated_at = now
        session.flush()
    return alert


def resolve(session: Session, alert_id: int, *, by: str, now: datetime) -> ConsistencyAlert:
    """Resolve by hand; a later run that finds the entity again opens a new alert."""
    alert = _get(session, alert_id)
    if alert.status != "resolved":
        alert.status = "resolved"
        alert.resolved_at = now
        alert.metadata_ = {**(alert.metadata_ or {}), "resolved_by": by}
        alert.updated_at = now
        session.flush()
    return alert


def create_silence(
    session: Session,
    *,
    author: str,
    comment: str,
    expires_at: datetime,
    now: datetime,
    alert_type: str | None = None,
    entity_type: str | None = None,
    entity_id: int | None = None,
) -> AlertSilence:
    """Mute notifications of alerts matching every given field until ``expires_at``."""
    if alert_type is None and entity_type is None and entity_id is None:
        raise BookingGuardError("a silence needs at least one matcher (rule or entity)")
    if expires_at <= now:
        raise BookingGuardError("a silence must expire in the future")
    silence = AlertSilence(
        alert_type=alert_type,
        entity_type=entity_type,
        entity_id=entity_id,
        author=author,
        comment=comment,
        starts_at=now,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(silence)
    session.flush()
    return silence


def list_silences(session: Session, *, now: datetime) -> list[AlertSilence]:
    return list(
        session.scalars(
            select(AlertSilence)
            .where(AlertSilence.expires_at > now)
            .order_by(AlertSilence.expires_at)
        )
    )


def expire_silence(session: Session, silence_id: int, *, now: datetime) -> None:
    session.execute(
        update(AlertSilence).where(AlertSilence.id == silence_id).values(expires_at=now)
    )


def prune(session: Session, *, retention: timedelta, now: datetime) -> int:
    """Delete resolved or auto-corrected alerts older than the retention; returns the count."""
    cutoff = now - retention
    doomed = select(ConsistencyAlert.id).where(
        ConsistencyAlert.detected_at < cutoff,
        or_(ConsistencyAlert.status == "resolved", ConsistencyAlert.auto_corrected.is_(True)),
    )
    count = session.scalar(select(func.count()).select_from(doomed.subquery())) or 0
    session.execute(delete(ConsistencyAlert).where(ConsistencyAlert.id.in_(doomed)))
    session.execute(delete(AlertSilence).where(AlertSilence.expires_at < cutoff))
    session.flush()
    return int(count)


def ensure_partitions(session: Session, *, today: date, months: int = 2) -> int:
    """Monthly alert partitions ahead; 0 where the database keeps the alerts in one table.

    The partitioning itself is the database's (``db.ddl.ensure_alert_partitions``).
    """
    return ddl.ensure_alert_partitions(session.connection(), start=today, months=months)
