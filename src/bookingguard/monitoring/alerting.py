"""From a run's findings to outbox messages: grouping, throttle, repeat, silences, inhibition.

Alertmanager's model brought down to tables: one message per rule and severity
per run and channel; an alert is sent on a channel when it has never been sent
there, or its last **successful** send (``alert_sends``) is older than the
throttle (new alerts) or the repeat interval (still-open alerts). Acknowledged and
silenced alerts are not sent. While a booking circuit is open, the per-call
``missing_appointment`` message becomes one "booking dependency down" message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from bookingguard.db.models import (
    AlertSend,
    AlertSilence,
    CircuitBreakerState,
    ConsistencyAlert,
    NotificationOutbox,
)
from bookingguard.notify.outbox import Message, enqueue

__all__ = [
    "AlertPolicy",
    "RuleOutcome",
    "active_silences",
    "open_booking_circuits",
    "plan_notifications",
]

alerts: Table = ConsistencyAlert.__table__  # type: ignore[assignment]
BOOKING_CIRCUIT_PREFIX = "appointment_booking:"
INHIBITED_TYPES = frozenset({"missing_appointment"})


@dataclass
class RuleOutcome:
    """One rule's result in one run."""

    alert_type: str
    severity: str
    entity_type: str
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    opened: int = 0
    resolved: tuple[str, ...] = ()
    corrected: int = 0
    review_filed: int = 0
    errored: bool = False
    error: str | None = None
    #: The time of the statements that found and stored it; rules that share a statement
    #: (the window's scan of calls, the bump of re-detections) each count all of it.
    duration_seconds: float = 0.0


@dataclass(frozen=True)
class AlertPolicy:
    """When and where to notify."""

    channels: tuple[str, ...] = ("log",)
    throttle: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    sample_size: int = 10
    dashboard_url: str = ""


@dataclass(frozen=True)
class _OpenAlert:
    fingerprint: str
    entity_type: str
    entity_id: int | None
    detected_at: datetime


def active_silences(session: Session, now: datetime) -> list[AlertSilence]:
    return list(
        session.scalars(
            select(AlertSilence).where(AlertSilence.starts_at <= now, AlertSilence.expires_at > now)
        )
    )


def _silenced(
    silences: Sequence[AlertSilence], alert_type: str, entity_type: str, entity_id: int | None
) -> bool:
    return any(
        (s.alert_type is None or s.alert_type == alert_type)
        and (s.entity_type is None or s.entity_type == entity_type)
        and (s.entity_id is None or s.entity_id == entity_id)
        for s in silences
    )


def open_booking_circuits(session: Session) -> list[str]:
    """Booking circuits the breaker stores report open (read from ``circuit_breaker_states``)."""
    return list(
        session.scalars(
            select(CircuitBreakerState.circuit_key)
            .where(
                CircuitBreakerState.state == "open",
                CircuitBreakerState.circuit_key.like(f"{BOOKING_CIRCUIT_PREFIX}%"),
            )
            .order_by(CircuitBreakerState.circuit_key)
        )
    )


def _pending_fingerprints(session: Session, channel: str) -> set[str]:
    pending: set[str] = set()
    for fingerprints in session.scalars(
        select(NotificationOutbox.fingerprints).where(
            NotificationOutbox.channel == channel, NotificationOutbox.status == "pending"
        )
    ):
        pending.update(fingerprints or [])
    return pending


def _last_sends(session: Session, channel: str, alert_type: str) -> dict[str, datetime]:
    rows = session.execute(
        select(AlertSend.fingerprint, AlertSend.last_sent_at).where(
            AlertSend.channel == channel, AlertSend.fingerprint.like(f"{alert_type}:%")
        )
    ).all()
    return {str(row.fingerprint): row.last_sent_at for row in rows}


def _samples(items: Sequence[_OpenAlert], size: int) -> list[dict[str, Any]]:
    return [{"entity_type": a.entity_type, "entity_id": a.entity_id} for a in items[:size]]


def plan_notifications(
    session: Session,
    outcomes: Sequence[RuleOutcome],
    *,
    policy: AlertPolicy,
    now: datetime,
    enabled: bool = True,
) -> int:
    """Queue this run's grouped messages in the outbox; returns the number of outbox rows."""
    if not enabled:
        return 0
    silences = active_silences(session, now)
    circuits = open_booking_circuits(session)
    queued = 0
    for outcome in outcomes:
        if outcome.errored:
            continue
        open_alerts = [
            _OpenAlert(row.fingerprint, row.entity_type, row.entity_id, row.detected_at)
            for row in session.execute(
                select(
                    alerts.c.fingerprint,
                    alerts.c.entity_type,
                    alerts.c.entity_id,
                    alerts.c.detected_at,
                )
                .where(alerts.c.alert_type == outcome.alert_type, alerts.c.status == "open")
                .order_by(alerts.c.entity_id)
            )
            if not _silenced(silences, outcome.alert_type, row.entity_type, row.entity_id)
        ]
        for channel in policy.channels:
            queued += _plan_firing(session, outcome, open_alerts, channel, circuits, policy, now)
            queued += _plan_resolved(session, outcome, silences, channel, policy, now)
        if outcome.corrected:
            message = Message(
                kind="auto_corrected",
                subject=f"{outcome.alert_type}: {outcome.corrected} auto-corrected",
                severity=outcome.severity,
                body=_body(
                    outcome, outcome.corrected, outcome.samples[: policy.sample_size], policy
                ),
            )
            queued += len(enqueue(session, message, now=now, channels=policy.channels))
    return queued


def _body(
    outcome: RuleOutcome, count: int, samples: list[dict[str, Any]], policy: AlertPolicy
) -> dict[str, Any]:
    return {
        "alert_type": outcome.alert_type,
        "count": count,
        "samples": samples,
        "dashboard_url": policy.dashboard_url,
    }


def _plan_firing(
    session: Session,
    outcome: RuleOutcome,
    open_alerts: Sequence[_OpenAlert],
    channel: str,
    circuits: Sequence[str],
    policy: AlertPolicy,
    now: datetime,
) -> int:
    if not open_alerts:
        return 0
    sent = _last_sends(session, channel, outcome.alert_type)
    pending = _pending_fingerprints(session, channel)
    due = []
    for alert in open_alerts:
        if alert.fingerprint in pending:
            continue
        last = sent.get(alert.fingerprint)
        # Sent for this very alert: repeat later. Sent for an earlier alert with the same
        # fingerprint (it resolved and came back): only the throttle applies.
        wait = policy.repeat_interval if last and last >= alert.detected_at else policy.throttle
        if last is None or last <= now - wait:
            due.append(alert)
    if not due:
        return 0
    body = _body(outcome, len(due), _samples(due, policy.sample_size), policy)
    if outcome.alert_type in INHIBITED_TYPES and circuits:
        message = Message(
            kind="booking_dependency_down",
            subject=(
                f"Booking dependency down ({', '.join(circuits)}): "
                f"{len(due)} calls marked booked without an appointment"
            ),
            severity=outcome.severity,
            body={**body, "circuits": list(circuits)},
            fingerprints=tuple(a.fingerprint for a in due),
        )
    else:
        message = Message(
            kind="alert",
            subject=f"[{outcome.severity.upper()}] {outcome.alert_type}: {len(due)} finding(s)",
            severity=outcome.severity,
            body=body,
            fingerprints=tuple(a.fingerprint for a in due),
        )
    return len(enqueue(session, message, now=now, channels=[channel]))


def _plan_resolved(
    session: Session,
    outcome: RuleOutcome,
    silences: Sequence[AlertSilence],
    channel: str,
    policy: AlertPolicy,
    now: datetime,
) -> int:
    # An info finding ageing out of its window is not news: no resolved message for it.
    if not outcome.resolved or outcome.severity == "info":
        return 0
    told = set(
        session.scalars(
            select(AlertSend.fingerprint).where(
                AlertSend.channel == channel, AlertSend.fingerprint.in_(outcome.resolved)
            )
        )
    )
    resolved = [
        fp
        for fp in outcome.resolved
        if fp in told and not _silenced(silences, outcome.alert_type, *_entity_of(fp))
    ]
    if not resolved:
        return 0
    samples = [
        dict(zip(("entity_type", "entity_id"), _entity_of(fp), strict=True)) for fp in resolved
    ]
    message = Message(
        kind="resolved",
        subject=f"[RESOLVED] {outcome.alert_type}: {len(resolved)} resolved",
        severity=outcome.severity,
        body=_body(outcome, len(resolved), samples[: policy.sample_size], policy),
        fingerprints=(),
    )
    return len(enqueue(session, message, now=now, channels=[channel]))


def _entity_of(fingerprint: str) -> tuple[str, int | None]:
    _, entity_type, entity_id = fingerprint.rsplit(":", 2)
    return entity_type, int(entity_id) if entity_id else None
