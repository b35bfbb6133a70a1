"""Read models for the dashboard, straight from the tables (and the in-process metrics).

The consistency rate of a day is the share of that day's calls not found
inconsistent, by the one definition in ``monitoring.inconsistency`` that the daily
report and the API use too, so the dashboard and the report agree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from bookingguard.db.models import (
    Call,
    CheckRun,
    CircuitBreakerState,
    CircuitBreakerTransition,
    ConsistencyAlert,
)
from bookingguard.monitoring.inconsistency import INCONSISTENCY_SEVERITIES, found_inconsistent
from bookingguard.resilience import CircuitStatus, circuit_status
from bookingguard.review.queue import open_count

__all__ = [
    "INCONSISTENCY_SEVERITIES",
    "BreakerView",
    "DayRate",
    "Overview",
    "Segment",
    "ValidationView",
    "alerts",
    "breakers",
    "circuit_failure_rates",
    "day_rates",
    "overview",
    "validation",
]

OPEN_ALERT_STATUSES = ("open", "acknowledged")
MIN_VISIBLE_WIDTH = 0.6


@dataclass(frozen=True)
class DayRate:
    day: date
    calls: int
    inconsistent: int

    @property
    def rate(self) -> float | None:
        if not self.calls:
            return None
        return round(100 * (self.calls - self.inconsistent) / self.calls, 2)


@dataclass
class Overview:
    today: DayRate
    trend: list[DayRate]
    open_alerts: dict[tuple[str, str], int]
    open_alerts_total: int
    alerts_14d: int
    auto_corrected_14d: int
    review_queue_size: int
    last_run: CheckRun | None

    @property
    def auto_correction_rate(self) -> float | None:
        if not self.alerts_14d:
            return None
        return round(100 * self.auto_corrected_14d / self.alerts_14d, 1)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_rates(session: Session, *, now: datetime, days: int = 14) -> list[DayRate]:
    """Calls, and those found inconsistent, per UTC day for the last ``days`` days, oldest first."""
    first = now.date() - timedelta(days=days - 1)
    since = _day_start(first)
    flagged = found_inconsistent(Call.id)
    starts = [_day_start(first + timedelta(days=offset)) for offset in range(1, days)]
    bucket = case(
        *((Call.created_at < start, index) for index, start in enumerate(starts)), else_=days - 1
    )
    rows = (
        select(bucket.label("bucket"), case((flagged, 1), else_=0).label("bad"))
        .where(Call.created_at >= since, Call.created_at <= now)
        .subquery()
    )
    totals: dict[date, list[int]] = {}
    for index, calls, bad in session.execute(
        select(rows.c.bucket, func.count(), func.sum(rows.c.bad)).group_by(rows.c.bucket)
    ):
        totals[first + timedelta(days=int(index))] = [int(calls), int(bad or 0)]
    return [
        DayRate(day, *totals.get(day, [0, 0]))
        for day in (first + timedelta(days=offset) for offset in range(days))
    ]


def overview(session: Session, *, now: datetime) -> Overview:
    """Everything the overview page shows."""
    trend = day_rates(session, now=now)
    open_rows = session.execute(
        select(ConsistencyAlert.alert_type, ConsistencyAlert.severity, func.count())
        .where(ConsistencyAlert.status.in_(OPEN_ALERT_STATUSES))
        .group_by(ConsistencyAlert.alert_type, ConsistencyAlert.severity)
    ).all()
    open_alerts = {(str(kind), str(severity)): int(count) for kind, severity, count in open_rows}
    since = now - timedelta(days=14)
    total, corrected = session.execute(
        select(
            func.count(),
            func.coalesce(
                func.sum(case((ConsistencyAlert.auto_corrected.is_(True), 1), else_=0)), 0
            ),
        ).where(ConsistencyAlert.detected_at >= since)
    ).one()
    last_run = session.scalars(
        select(CheckRun).order_by(CheckRun.started_at.desc()).limit(1)
    ).first()
    return Overview(
        today=trend[-1],
        trend=trend,
        open_alerts=dict(sorted(open_alerts.items(), key=lambda kv: (-kv[1], kv[0]))),
        open_alerts_total=sum(open_alerts.values()),
        alerts_14d=int(total),
        auto_corrected_14d=int(corrected),
        review_queue_size=open_count(session),
        last_run=last_run,
    )


def alerts(
    session: Session,
    *,
    status: str | None = None,
    severity: str | None = None,
    alert_type: str | None = None,
    limit: int = 200,
) -> list[ConsistencyAlert]:
    """Alerts, newest first; open and acknowledged ones unless ``status`` says otherwise."""
    query = select(ConsistencyAlert)
    if status:
        query = query.where(ConsistencyAlert.status == status)
    else:
        query = query.where(ConsistencyAlert.status.in_(OPEN_ALERT_STATUSES))
    if severity:
        query = query.where(ConsistencyAlert.severity == severity)
    if alert_type:
        query = query.where(ConsistencyAlert.alert_type == alert_type)
    order = case(
        (ConsistencyAlert.severity == "critical", 0),
        (ConsistencyAlert.severity == "warning", 1),
        else_=2,
    )
    return list(
        session.scalars(query.order_by(order, ConsistencyAlert.detected_at.desc()).limit(limit))
    )


@dataclass(frozen=True)
class Segment:
    state: str
    start: float
    width: float


@dataclass
class BreakerView:
    circuit: CircuitBreakerState
    #: How the circuit reads now: an elapsed cooldown is "open, next call probes".
    status: CircuitStatus
    transitions: list[CircuitBreakerTransition]
    segments: list[Segment] = field(default_factory=list)


def breakers(session: Session, *, now: datetime, days: int = 14) -> list[BreakerView]:
    """Every circuit with its transitions in the window and a state timeline (0 to 100 %)."""
    since = now - timedelta(days=days)
    span = (now - since).total_seconds()
    views = []
    for circuit in session.scalars(
        select(CircuitBreakerState).order_by(CircuitBreakerState.circuit_key)
    ):
        transitions = list(
            session.scalars(
                select(CircuitBreakerTransition)
                .where(
                    and_(
                        CircuitBreakerTransition.circuit_key == circuit.circuit_key,
                        CircuitBreakerTransition.at >= since,
                    )
                )
                .order_by(CircuitBreakerTransition.at, CircuitBreakerTransition.version)
            )
        )
        state = transitions[0].from_state if transitions else circuit.state
        cursor = since
        segments = []
        for transition in [*transitions, None]:
            end = transition.at if transition is not None else now
            width = (end - cursor).total_seconds() / span * 100
            if state != "closed" and width > 0:
                # A 90-second outage in a 14-day window must still be visible.
                width = max(width, MIN_VISIBLE_WIDTH)
            segments.append(Segment(state, (cursor - since).total_seconds() / span * 100, width))
            if transition is not None:
                state, cursor = transition.to_state, transition.at
        status = circuit_status(
            state=circuit.state,
            forced_open=circuit.forced_open,
            open_until=circuit.open_until,
            now=now,
        )
        views.append(
            BreakerView(
                circuit,
                status,
                list(reversed(transitions)),
                [s for s in segments if s.width > 0],
            )
        )
    return views


@dataclass
class ValidationView:
    samples: int
    p50: float | None
    p95: float | None
    p99: float | None
    failures_by_reason: dict[str, float]
    rollbacks: float
    retries: float
    outcomes: dict[str, float]
    failed_calls_by_reason: list[tuple[str, int]]
    validation_alerts_14d: int


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """``histogram_quantile`` over cumulative (upper bound, count) buckets."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return lower + (bound - lower) * share
        lower, lower_count = bound, count
    return lower


def _samples(registry: CollectorRegistry, name: str) -> list[Sample]:
    return [
        sample
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name or sample.name.startswith(name + "_")
    ]


def validation(session: Session, registry: CollectorRegistry, *, now: datetime) -> ValidationView:
    """Validation latency quantiles and failures from the metrics; failures from the tables."""
    buckets: dict[float, float] = defaultdict(float)
    outcomes: dict[str, float] = defaultdict(float)
    for sample in _samples(registry, "bookingguard_validation_duration_seconds"):
        if sample.name.endswith("_bucket"):
            buckets[float(sample.labels["le"])] += sample.value
        elif sample.name.endswith("_count"):
            outcomes[sample.labels.get("outcome", "all")] += sample.value
    ordered = sorted(buckets.items())
    failures: dict[str, float] = defaultdict(float)
    for sample in _samples(registry, "bookingguard_validation_failures_total"):
        if sample.name.endswith("_total"):
            failures[sample.labels.get("reason", "unknown")] += sample.value

    def total(name: str) -> float:
        return float(sum(s.value for s in _samples(registry, name) if s.name.endswith("_total")))

    reasons = session.execute(
        select(Call.booking_failure_reason, func.count())
        .where(Call.booking_failed.is_(True))
        .group_by(Call.booking_failure_reason)
        .order_by(func.count().desc())
        .limit(10)
    ).all()
    validation_alerts = session.scalar(
        select(func.count())
        .select_from(ConsistencyAlert)
        .where(
            ConsistencyAlert.alert_type.in_(
                ("appointment_validation_failed", "appointment_rollback")
            ),
            ConsistencyAlert.detected_at >= now - timedelta(days=14),
        )
    )
    return ValidationView(
        samples=int(ordered[-1][1]) if ordered else 0,
        p50=_quantile(ordered, 0.50),
        p95=_quantile(ordered, 0.95),
        p99=_quantile(ordered, 0.99),
        failures_by_reason=dict(failures),
        rollbacks=total("bookingguard_rollbacks_total"),
        retries=total("bookingguard_booking_retries_total"),
        outcomes=dict(outcomes),
        failed_calls_by_reason=[(str(reason or "unknown"), int(n)) for reason, n in reasons],
        validation_alerts_14d=int(validation_alerts or 0),
    )


def circuit_failure_rates(registry: CollectorRegistry) -> dict[str, float]:
    """Failure percentage per circuit from ``bookingguard_circuit_calls_total{circuit,outcome}``."""
    calls: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for sample in _samples(registry, "bookingguard_circuit_calls_total"):
        if sample.name.endswith("_total"):
            circuit = sample.labels.get("circuit", "")
            calls[circuit][sample.labels.get("outcome", "")] += sample.value
    rates = {}
    for circuit, outcomes in calls.items():
        counted = outcomes.get("success", 0.0) + outcomes.get("failure", 0.0)
        if counted:
            rates[circuit] = 100 * outcomes.get("failure", 0.0) / counted
    return rates
