"""Initial schema, database-side guarantees and (PostgreSQL) monthly alert partitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from bookingguard.db.ddl import drop_guarantees, ensure_alert_partitions, install_guarantees
from bookingguard.db.types import BigIntPK, JSONDocument, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.func.current_timestamp()
FALSE = sa.text("false")


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.Column("updated_at", UTCDateTime, server_default=NOW, nullable=False),
    ]


def _pk() -> sa.Column[int]:
    return sa.Column("id", BigIntPK, primary_key=True, autoincrement=True)


def _one_of(column: str, values: Sequence[str], *, nullable: bool = True) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    clause = f"{column} IN ({quoted})"
    return f"{column} IS NULL OR {clause}" if nullable else clause


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
APPOINTMENT_STATUSES = (
    "pending",
    "booked",
    "confirmed",
    "rescheduled",
    "cancelled",
    "completed",
    "no_show",
)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    op.create_table(
        "customers",
        _pk(),
        sa.Column("name", sa.String(200)),
        sa.Column("phone", sa.String(40)),
        sa.Column("email", sa.String(320)),
        *_timestamps(),
    )
    op.create_index("ix_customers_phone", "customers", ["phone"])
    op.create_index("ix_customers_email", "customers", ["email"])

    op.create_table(
        "calls",
        _pk(),
        sa.Column("retell_call_id", sa.String(128), nullable=False),
        sa.Column(
            "customer_id",
            sa.BigInteger,
            sa.ForeignKey(
                "customers.id", ondelete="SET NULL", name="fk_calls_customer_id_customers"
            ),
        ),
        sa.Column("customer_link_status", sa.String(20)),
        sa.Column("customer_linked_at", UTCDateTime),
        sa.Column("direction", sa.String(10)),
        sa.Column("from_number", sa.String(40)),
        sa.Column("to_number", sa.String(40)),
        sa.Column("call_status", sa.String(40)),
        sa.Column("session_outcome", sa.String(40)),
        sa.Column("appointment_made", sa.Boolean, server_default=FALSE, nullable=False),
        sa.Column("appointment_link_status", sa.String(20)),
        sa.Column("appointment_linked_at", UTCDateTime),
        sa.Column("booking_failed", sa.Boolean, server_default=FALSE, nullable=False),
        sa.Column("booking_failure_reason", sa.Text),
        sa.Column("requires_manual_processing", sa.Boolean, server_default=FALSE, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("ended_at", UTCDateTime),
        *_timestamps(),
        sa.UniqueConstraint("retell_call_id", name="uq_calls_retell_call_id"),
        sa.CheckConstraint(
            "direction IS NULL OR direction = '' OR direction IN ('inbound', 'outbound')",
            name="ck_calls_direction",
        ),
        sa.CheckConstraint(
            _one_of("session_outcome", SESSION_OUTCOMES), name="ck_calls_session_outcome"
        ),
        sa.CheckConstraint(
            _one_of("appointment_link_status", LINK_STATUSES),
            name="ck_calls_appointment_link_status",
        ),
        sa.CheckConstraint(
            _one_of("customer_link_status", ("linked", "unlinked")),
            name="ck_calls_customer_link_status",
        ),
    )
    op.create_index(
        "ix_calls_appointment_made_created_at", "calls", ["appointment_made", "created_at"]
    )
    op.create_index("ix_calls_created_at", "calls", ["created_at"])
    op.create_index("ix_calls_booking_failed_created_at", "calls", ["booking_failed", "created_at"])
    op.create_index("ix_calls_customer_id", "calls", ["customer_id"])

    op.create_table(
        "appointments",
        _pk(),
        sa.Column(
            "call_id",
            sa.BigInteger,
            sa.ForeignKey("calls.id", ondelete="SET NULL", name="fk_appointments_call_id_calls"),
        ),
        sa.Column(
            "customer_id",
            sa.BigInteger,
            sa.ForeignKey(
                "customers.id", ondelete="SET NULL", name="fk_appointments_customer_id_customers"
            ),
        ),
        sa.Column("event_type_id", sa.BigInteger),
        sa.Column("calcom_v2_booking_id", sa.BigInteger),
        sa.Column("calcom_booking_uid", sa.String(128)),
        sa.Column("starts_at", UTCDateTime),
        sa.Column("ends_at", UTCDateTime),
        sa.Column("status", sa.String(20), server_default=sa.text("'booked'"), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        *_timestamps(),
        sa.UniqueConstraint("calcom_v2_booking_id", name="uq_appointments_calcom_v2_booking_id"),
        sa.UniqueConstraint("idempotency_key", name="uq_appointments_idempotency_key"),
        sa.CheckConstraint(
            _one_of("status", APPOINTMENT_STATUSES, nullable=False), name="ck_appointments_status"
        ),
    )
    op.create_index("ix_appointments_call_id", "appointments", ["call_id"])
    op.create_index("ix_appointments_customer_id", "appointments", ["customer_id"])
    op.create_index("ix_appointments_starts_at", "appointments", ["starts_at"])
    op.create_index("ix_appointments_created_at", "appointments", ["created_at"])
    op.create_index(
        "ix_appointments_calcom_booking_uid", "appointments", ["calcom_booking_uid"], unique=True
    )

    _create_alerts(postgres=postgres)

    op.create_table(
        "alert_silences",
        _pk(),
        sa.Column("alert_type", sa.String(64)),
        sa.Column("entity_type", sa.String(32)),
        sa.Column("entity_id", sa.BigInteger),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("starts_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, server_default=NOW, nullable=False),
    )
    op.create_index("ix_alert_silences_expires_at", "alert_silences", ["expires_at"])

    op.create_table(
        "alert_sends",
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("last_sent_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", "channel", name="pk_alert_sends"),
    )

    op.create_table(
        "check_runs",
        _pk(),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("window_since", UTCDateTime),
        sa.Column("window_until", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("results", JSONDocument, nullable=False),
        sa.Column("totals", JSONDocument, nullable=False),
        sa.Column("auto_corrected", sa.Integer, nullable=False),
        sa.Column("alerts_opened", sa.Integer, nullable=False),
        sa.Column("alerts_resolved", sa.Integer, nullable=False),
        sa.Column("errors", JSONDocument, nullable=False),
    )
    op.create_index("ix_check_runs_started_at", "check_runs", ["started_at"])

    op.create_table(
        "circuit_breaker_states",
        _pk(),
        sa.Column("circuit_key", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failure_count", sa.Integer, nullable=False),
        sa.Column("success_count", sa.Integer, nullable=False),
        sa.Column("last_failure_at", UTCDateTime),
        sa.Column("opened_at", UTCDateTime),
        sa.Column("closed_at", UTCDateTime),
        sa.Column("open_until", UTCDateTime),
        sa.Column("forced_open", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("probe_token", sa.String(64)),
        sa.Column("probe_expires_at", UTCDateTime),
        sa.Column("window", JSONDocument),
        *_timestamps(),
        sa.UniqueConstraint("circuit_key", name="uq_circuit_breaker_states_circuit_key"),
        sa.CheckConstraint(
            _one_of("state", ("closed", "open", "half_open"), nullable=False),
            name="ck_circuit_breaker_states_state",
        ),
    )
    op.create_index("ix_circuit_breaker_states_state", "circuit_breaker_states", ["state"])
    op.create_index(
        "ix_circuit_breaker_states_last_failure_at", "circuit_breaker_states", ["last_failure_at"]
    )
    op.create_index(
        "ix_circuit_breaker_states_state_opened_at",
        "circuit_breaker_states",
        ["state", "opened_at"],
    )

    op.create_table(
        "circuit_breaker_transitions",
        _pk(),
        sa.Column("circuit_key", sa.String(200), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "circuit_key", "version", name="uq_circuit_breaker_transitions_circuit_key_version"
        ),
    )
    op.create_index("ix_circuit_breaker_transitions_at", "circuit_breaker_transitions", ["at"])

    op.create_table(
        "manual_review_queue",
        _pk(),
        sa.Column(
            "call_id",
            sa.BigInteger,
            sa.ForeignKey(
                "calls.id", ondelete="CASCADE", name="fk_manual_review_queue_call_id_calls"
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("context", JSONDocument),
        sa.Column("assigned_to", sa.String(200)),
        sa.Column("resolved_by", sa.String(200)),
        sa.Column("resolved_at", UTCDateTime),
        sa.Column("resolution_note", sa.Text),
        *_timestamps(),
        sa.CheckConstraint(
            _one_of("status", ("pending", "in_progress", "resolved", "dismissed"), nullable=False),
            name="ck_manual_review_queue_status",
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 4", name="ck_manual_review_queue_priority"),
    )
    op.create_index(
        "ix_manual_review_queue_status_priority", "manual_review_queue", ["status", "priority"]
    )
    op.create_index(
        "ix_manual_review_queue_status_created_at", "manual_review_queue", ["status", "created_at"]
    )
    op.create_index(
        "ix_manual_review_queue_status_priority_created_at",
        "manual_review_queue",
        ["status", "priority", "created_at"],
    )
    open_items = sa.text("status IN ('pending', 'in_progress')")
    op.create_index(
        "uq_manual_review_queue_open_call",
        "manual_review_queue",
        ["call_id"],
        unique=True,
        postgresql_where=open_items,
        sqlite_where=open_items,
    )

    op.create_table(
        "review_audit_log",
        _pk(),
        sa.Column(
            "review_item_id",
            sa.BigInteger,
            sa.ForeignKey(
                "manual_review_queue.id",
                ondelete="SET NULL",
                name="fk_review_audit_log_review_item_id_manual_review_queue",
            ),
        ),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("details", JSONDocument),
        sa.Column("at", UTCDateTime, server_default=NOW, nullable=False),
    )
    op.create_index(
        "ix_review_audit_log_review_item_id_at", "review_audit_log", ["review_item_id", "at"]
    )

    op.create_table(
        "notification_outbox",
        _pk(),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("payload", JSONDocument, nullable=False),
        sa.Column("fingerprints", JSONDocument),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.CheckConstraint(
            _one_of("status", ("pending", "sent", "failed"), nullable=False),
            name="ck_notification_outbox_status",
        ),
    )
    op.create_index(
        "ix_notification_outbox_status_next_attempt_at",
        "notification_outbox",
        ["status", "next_attempt_at"],
    )

    op.create_table(
        "api_tokens",
        _pk(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        sa.CheckConstraint(
            _one_of("scope", ("read", "operate"), nullable=False), name="ck_api_tokens_scope"
        ),
    )

    op.create_table(
        "webhook_events",
        _pk(),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_key", sa.String(300), nullable=False),
        sa.Column("received_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.UniqueConstraint("event_key", name="uq_webhook_events_event_key"),
    )

    install_guarantees(bind, not_live=("cancelled",), as_of=1)
    if postgres:
        ensure_alert_partitions(bind, start=datetime.now(UTC).date(), months=2)


def _create_alerts(*, postgres: bool) -> None:
    """The alerts table; on PostgreSQL range-partitioned by month with a default partition."""
    if postgres:
        op.execute("CREATE SEQUENCE data_consistency_alerts_id_seq")
        id_column = sa.Column(
            "id",
            sa.BigInteger,
            server_default=sa.text("nextval('data_consistency_alerts_id_seq')"),
            nullable=False,
        )
        primary_key = sa.PrimaryKeyConstraint(
            "id", "detected_at", name="pk_data_consistency_alerts"
        )
        options: dict[str, Any] = {"postgresql_partition_by": "RANGE (detected_at)"}
    else:
        id_column = _pk()
        primary_key = None
        options = {}
    op.create_table(
        "data_consistency_alerts",
        id_column,
        sa.Column("alert_type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.BigInteger),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("metadata", JSONDocument),
        sa.Column("detected_at", UTCDateTime, server_default=NOW, nullable=False),
        sa.Column("auto_corrected", sa.Boolean, server_default=FALSE, nullable=False),
        sa.Column("corrected_at", UTCDateTime),
        sa.Column("fingerprint", sa.String(200)),
        sa.Column("status", sa.String(16), server_default=sa.text("'open'"), nullable=False),
        sa.Column("last_seen_at", UTCDateTime),
        sa.Column("occurrences", sa.Integer, server_default=sa.text("1"), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("resolved_at", UTCDateTime),
        *_timestamps(),
        *([primary_key] if primary_key is not None else []),
        sa.CheckConstraint(
            _one_of("severity", ("critical", "warning", "info"), nullable=False),
            name="ck_data_consistency_alerts_severity",
        ),
        sa.CheckConstraint(
            _one_of("status", ("open", "acknowledged", "resolved"), nullable=False),
            name="ck_data_consistency_alerts_status",
        ),
        **options,
    )
    if postgres:
        op.execute(
            "ALTER SEQUENCE data_consistency_alerts_id_seq OWNED BY data_consistency_alerts.id"
        )
        op.execute(
            "CREATE TABLE data_consistency_alerts_default "
            "PARTITION OF data_consistency_alerts DEFAULT"
        )
    for name, columns in (
        ("alert_type", ["alert_type"]),
        ("severity", ["severity"]),
        ("entity", ["entity_type", "entity_id"]),
        ("detected_at", ["detected_at"]),
        ("auto_corrected", ["auto_corrected"]),
        ("alert_type_detected_at", ["alert_type", "detected_at"]),
        ("severity_detected_at", ["severity", "detected_at"]),
        ("fingerprint_status", ["fingerprint", "status"]),
        ("status_detected_at", ["status", "detected_at"]),
    ):
        op.create_index(f"ix_data_consistency_alerts_{name}", "data_consistency_alerts", columns)


def downgrade() -> None:
    bind = op.get_bind()
    drop_guarantees(bind)
    for table in (
        "webhook_events",
        "api_tokens",
        "notification_outbox",
        "review_audit_log",
        "manual_review_queue",
        "circuit_breaker_transitions",
        "circuit_breaker_states",
        "check_runs",
        "alert_sends",
        "alert_silences",
    ):
        op.drop_table(table)
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE data_consistency_alerts CASCADE")
    else:
        op.drop_table("data_consistency_alerts")
    op.drop_table("appointments")
    op.drop_table("calls")
    op.drop_table("customers")
