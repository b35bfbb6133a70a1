"""SQLAlchemy 2 models for every table. Table and column names are fixed by DESIGN.md.

Value sets are enforced with CHECK constraints (portable, and cheap to extend in a
migration). Relationships are ``lazy="raise"``: every load is explicit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bookingguard.db.types import BigIntPK, JSONDocument, UTCDateTime
from bookingguard.token_format import TOKEN_SCOPES

__all__ = [
    "ALERT_STATUSES",
    "APPOINTMENT_SOURCES",
    "APPOINTMENT_STATUSES",
    "BREAKER_STATES",
    "CLAIM_STATUS",
    "CUSTOMER_LINK_STATUSES",
    "DIRECTIONS",
    "LINK_STATUSES",
    "NOT_LIVE_APPOINTMENT_STATUSES",
    "OUTBOX_STATUSES",
    "REVIEW_STATUSES",
    "SESSION_OUTCOMES",
    "SEVERITIES",
    "TOKEN_SCOPES",
    "AlertSend",
    "AlertSilence",
    "ApiToken",
    "Appointment",
    "Base",
    "Call",
    "CheckRun",
    "CircuitBreakerState",
    "CircuitBreakerTransition",
    "ConsistencyAlert",
    "Customer",
    "ManualReviewItem",
    "NotificationOutbox",
    "ReviewAuditLog",
    "WebhookEvent",
    "is_live_appointment",
    "live_appointment_sql",
]

DIRECTIONS = ("inbound", "outbound")
SESSION_OUTCOMES = (
    "appointment_booked",
    "appointment_rescheduled",
    "appointment_cancelled",
    "information_only",
    "callback_requested",
    "transferred",
    "voicemail",
    "abandoned",
    "technical_issue",
    "spam",
    "creation_failed",
    "other",
)
LINK_STATUSES = ("linked", "unlinked", "pending_creation", "creation_failed", "not_applicable")
CUSTOMER_LINK_STATUSES = ("linked", "unlinked")
APPOINTMENT_STATUSES = (
    "pending",
    "booked",
    "confirmed",
    "rescheduled",
    "cancelled",
    "completed",
    "no_show",
    "rejected",
    "pending_creation",
)
#: The status of a booking's claim: the row the booking path inserts for its idempotency
#: key before it asks Cal.com, which becomes the appointment once Cal.com answers.
CLAIM_STATUS = "pending_creation"
#: Statuses of an appointment that does not hold its slot: the call it came from is not
#: booked by it (a claim does not hold one yet; the others no longer do). The one
#: definition of "live" (every other status) that the database guarantees, the
#: live-appointment index, the monitor and bulk linking use.
NOT_LIVE_APPOINTMENT_STATUSES = ("cancelled", "rescheduled", "rejected", CLAIM_STATUS)
#: ``agent``: booked through our functions; ``calcom``: booked elsewhere (the business's
#: own booking page), with no call and no alarm.
APPOINTMENT_SOURCES = ("agent", "calcom")
SEVERITIES = ("critical", "warning", "info")
ALERT_STATUSES = ("open", "acknowledged", "resolved")
REVIEW_STATUSES = ("pending", "in_progress", "resolved", "dismissed")
BREAKER_STATES = ("closed", "open", "half_open")
OUTBOX_STATUSES = ("pending", "sent", "failed")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...], *, nullable: bool = True) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    clause = f"{column} IN ({quoted})"
    return f"{column} IS NULL OR {clause}" if nullable else clause


def live_appointment_sql(
    status: str = "status", not_live: Sequence[str] = NOT_LIVE_APPOINTMENT_STATUSES
) -> str:
    """SQL text: the appointment whose status column is ``status`` is live.

    ``not_live`` is for migrations, which install the definition of their revision.
    """
    quoted = ", ".join(f"'{value}'" for value in not_live)
    return f"{status} NOT IN ({quoted})"


def is_live_appointment(status: ColumnElement[str]) -> ColumnElement[bool]:
    """``status`` is a live one, with the statuses written out (as the partial index has them)."""
    return status.not_in([literal_column(f"'{value}'") for value in NOT_LIVE_APPOINTMENT_STATUSES])


def _now() -> Any:
    return func.current_timestamp()


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=_now(), onupdate=_now()
    )


class Customer(_Timestamps, Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40), index=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)


class Call(_Timestamps, Base):
    """One phone call handled by the voice agent."""

    __tablename__ = "calls"
    __table_args__ = (
        # Empty text is tolerated only so a database-side default can replace it; the
        # direction trigger stores 'inbound' instead.
        CheckConstraint(
            "direction IS NULL OR direction = '' OR direction IN ('inbound', 'outbound')",
            name="direction",
        ),
        CheckConstraint(_one_of("session_outcome", SESSION_OUTCOMES), name="session_outcome"),
        CheckConstraint(
            _one_of("appointment_link_status", LINK_STATUSES), name="appointment_link_status"
        ),
        CheckConstraint(
            _one_of("customer_link_status", CUSTOMER_LINK_STATUSES), name="customer_link_status"
        ),
        Index("ix_calls_appointment_made_created_at", "appointment_made", "created_at"),
        # Covering (PostgreSQL): the monitor's window rules read calls without the heap.
        Index(
            "ix_calls_created_at",
            "created_at",
            postgresql_include=[
                "id",
                "appointment_made",
                "session_outcome",
                "direction",
                "appointment_link_status",
                "booking_failed",
            ],
        ),
        Index("ix_calls_booking_failed_created_at", "booking_failed", "created_at"),
        Index("ix_calls_customer_id", "customer_id"),
        # The monitor's --all merge joins and probes by id, without the heap (PostgreSQL).
        Index(
            "ix_calls_id_monitor",
            "id",
            postgresql_include=["created_at", "appointment_made", "appointment_link_status"],
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    retell_call_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("customers.id", ondelete="SET NULL")
    )
    customer_link_status: Mapped[str | None] = mapped_column(String(20))
    customer_linked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    direction: Mapped[str | None] = mapped_column(String(10))
    from_number: Mapped[str | None] = mapped_column(String(40))
    to_number: Mapped[str | None] = mapped_column(String(40))
    call_status: Mapped[str | None] = mapped_column(String(40))
    session_outcome: Mapped[str | None] = mapped_column(String(40))
    appointment_made: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    appointment_link_status: Mapped[str | None] = mapped_column(String(20))
    appointment_linked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    booking_failed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    booking_failure_reason: Mapped[str | None] = mapped_column(Text)
    requires_manual_processing: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Appointment(_Timestamps, Base):
    """A booked slot; the statuses in ``NOT_LIVE_APPOINTMENT_STATUSES`` are not live.

    A row in ``pending_creation`` is a booking's claim on its idempotency key, taken
    before Cal.com is asked: it has no Cal.com booking yet and links no call.

    A ``calcom`` appointment (made outside our functions) has no call and is no orphan.
    """

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint(_one_of("status", APPOINTMENT_STATUSES, nullable=False), name="status"),
        CheckConstraint(_one_of("source", APPOINTMENT_SOURCES, nullable=False), name="source"),
        Index("ix_appointments_call_id", "call_id"),
        Index("ix_appointments_customer_id", "customer_id"),
        Index("ix_appointments_starts_at", "starts_at"),
        Index(
            "ix_appointments_created_at",
            "created_at",
            postgresql_include=["id", "call_id", "status"],
        ),
        # The monitor's "has a live appointment" probe and its --all merge joins, answered
        # from the index alone.
        Index(
            "ix_appointments_live_call_id",
            "call_id",
            postgresql_include=["id", "created_at"],
            postgresql_where=text(live_appointment_sql()),
            sqlite_where=text(live_appointment_sql()),
        ),
        Index("ix_appointments_calcom_booking_uid", "calcom_booking_uid", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    call_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("calls.id", ondelete="SET NULL")
    )
    customer_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("customers.id", ondelete="SET NULL")
    )
    event_type_id: Mapped[int | None] = mapped_column(BigInteger)
    calcom_v2_booking_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    calcom_booking_uid: Mapped[str | None] = mapped_column(String(128))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(
        String(20), default="booked", server_default=text("'booked'")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # The database's default only: statements compiled once elsewhere insert without it.
    source: Mapped[str] = mapped_column(String(10), server_default=text("'agent'"))


class ConsistencyAlert(Base):
    """A detected inconsistency. On PostgreSQL the table is range-partitioned by month.

    ``fingerprint`` (rule + entity) is what dedup keys on: one open alert per
    fingerprint, re-detection bumps ``occurrences`` and ``last_seen_at``. Because a
    partitioned table cannot have a unique index without the partition key, the
    one-open-per-fingerprint rule is kept by the monitor's single writer.
    """

    __tablename__ = "data_consistency_alerts"
    __table_args__ = (
        CheckConstraint(_one_of("severity", SEVERITIES, nullable=False), name="severity"),
        CheckConstraint(_one_of("status", ALERT_STATUSES, nullable=False), name="status"),
        Index("ix_data_consistency_alerts_entity", "entity_type", "entity_id"),
        Index("ix_data_consistency_alerts_detected_at", "detected_at"),
        Index("ix_data_consistency_alerts_auto_corrected", "auto_corrected"),
        Index("ix_data_consistency_alerts_alert_type_detected_at", "alert_type", "detected_at"),
        Index("ix_data_consistency_alerts_severity_detected_at", "severity", "detected_at"),
        Index("ix_data_consistency_alerts_fingerprint_status", "fingerprint", "status"),
        Index("ix_data_consistency_alerts_status_detected_at", "status", "detected_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    alert_type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(10))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONDocument)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    auto_corrected: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    corrected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fingerprint: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default=text("'open'"))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    occurrences: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=_now(), onupdate=_now()
    )


class AlertSilence(Base):
    """Mutes notifications for alerts matching rule and/or entity until ``expires_at``."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    alert_type: Mapped[str | None] = mapped_column(String(64))
    entity_type: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())


class AlertSend(Base):
    """Last successful notification per fingerprint and channel: what the throttle reads."""

    __tablename__ = "alert_sends"

    fingerprint: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CheckRun(Base):
    """One monitor run, kept append-only: per-rule counts, durations, errors."""

    __tablename__ = "check_runs"
    __table_args__ = (Index("ix_check_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    results: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    totals: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    auto_corrected: Mapped[int] = mapped_column(Integer, default=0)
    alerts_opened: Mapped[int] = mapped_column(Integer, default=0)
    alerts_resolved: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(JSONDocument, default=list)


class CircuitBreakerState(Base):
    """Current state of one circuit, as the SQL store holds it and every store audits it."""

    __tablename__ = "circuit_breaker_states"
    __table_args__ = (
        CheckConstraint(_one_of("state", BREAKER_STATES, nullable=False), name="state"),
        Index("ix_circuit_breaker_states_state", "state"),
        Index("ix_circuit_breaker_states_last_failure_at", "last_failure_at"),
        Index("ix_circuit_breaker_states_state_opened_at", "state", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    circuit_key: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="closed")
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    open_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    forced_open: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    probe_token: Mapped[str | None] = mapped_column(String(64))
    probe_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=_now(), onupdate=_now()
    )


class CircuitBreakerTransition(Base):
    """Append-only history of state changes; (circuit_key, version) makes writes idempotent."""

    __tablename__ = "circuit_breaker_transitions"
    __table_args__ = (
        UniqueConstraint("circuit_key", "version"),
        Index("ix_circuit_breaker_transitions_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    circuit_key: Mapped[str] = mapped_column(String(200))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(BigInteger)
    #: The store that decided it: ``redis``, ``sql`` or ``memory:<host>:<pid>`` (one
    #: process's own); None on rows older than revision 0008.
    decided_by: Mapped[str | None] = mapped_column(String(64))


class ManualReviewItem(_Timestamps, Base):
    """A case a human must look at. One open item per call; priority 1 is most urgent."""

    __tablename__ = "manual_review_queue"
    __table_args__ = (
        CheckConstraint(_one_of("status", REVIEW_STATUSES, nullable=False), name="status"),
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority"),
        Index("ix_manual_review_queue_status_priority", "status", "priority"),
        Index("ix_manual_review_queue_status_created_at", "status", "created_at"),
        Index(
            "ix_manual_review_queue_status_priority_created_at", "status", "priority", "created_at"
        ),
        Index(
            "uq_manual_review_queue_open_call",
            "call_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'in_progress')"),
            sqlite_where=text("status IN ('pending', 'in_progress')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    call_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("calls.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(SmallInteger, default=3)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_note: Mapped[str | None] = mapped_column(Text)


class ReviewAuditLog(Base):
    """Who did what to which review item, from where; written with the change itself."""

    __tablename__ = "review_audit_log"
    __table_args__ = (Index("ix_review_audit_log_review_item_id_at", "review_item_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    review_item_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("manual_review_queue.id", ondelete="SET NULL")
    )
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())


class NotificationOutbox(Base):
    """A message to deliver on one channel, written in the transaction that caused it."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        CheckConstraint(_one_of("status", OUTBOX_STATUSES, nullable=False), name="status"),
        Index("ix_notification_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    fingerprints: Mapped[list[str] | None] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """An API token: only its SHA-256 hash is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint(_one_of("scope", TOKEN_SCOPES, nullable=False), name="scope"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """Webhook deliveries already processed, so a redelivery changes nothing."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    event_key: Mapped[str] = mapped_column(String(300), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())


class DashboardSession(Base):
    """A signed-in dashboard browser: the cookie holds a random id, only its SHA-256 is stored.

    ``login_hash`` is set when the session came from the one-time login link: unique,
    so the link signs in once, in any worker or replica.
    """

    __tablename__ = "dashboard_sessions"
    __table_args__ = (
        CheckConstraint(_one_of("scope", TOKEN_SCOPES, nullable=False), name="scope"),
        Index("ix_dashboard_sessions_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    csrf_token: Mapped[str] = mapped_column(String(64))
    login_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
