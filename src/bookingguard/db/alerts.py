"""Recording an alert with its fingerprint: shared by booking, monitoring and the triggers.

The fingerprint is ``{alert_type}:{entity_type}:{entity_id}`` (the same text the
database triggers write). One open alert per fingerprint: recording an alert
that is already open bumps ``occurrences`` and ``last_seen_at`` instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from bookingguard.db.models import ConsistencyAlert
from bookingguard.db.types import JSONDocument

__all__ = ["SEVERITY_BY_TYPE", "fingerprint", "json_object", "record_alert", "severity_of"]

#: One severity per alert type, the same for the monitor, the booking path and the triggers.
SEVERITY_BY_TYPE: dict[str, str] = {
    "session_outcome_mismatch": "critical",
    "missing_appointment": "critical",
    "appointment_validation_failed": "critical",
    "appointment_rollback": "critical",
    "compensation_failed": "critical",
    "calcom_booking_missing": "critical",
    "stale_booking_claim": "critical",
    "missing_direction": "warning",
    "orphaned_appointment": "warning",
    "inconsistent_link_status": "warning",
    "unknown_calcom_booking": "warning",
    "unverified_booking_metadata": "warning",
    "appointment_rejected": "warning",
    "calcom_booking_mismatch": "warning",
    "recent_failures": "info",
}


def severity_of(alert_type: str) -> str:
    """The severity for ``alert_type`` (``info`` for a type not in the table)."""
    return SEVERITY_BY_TYPE.get(alert_type, "info")


def fingerprint(alert_type: str, entity_type: str, entity_id: int | None) -> str:
    return f"{alert_type}:{entity_type}:{'' if entity_id is None else entity_id}"


def record_alert(
    session: Session,
    *,
    alert_type: str,
    entity_type: str,
    entity_id: int | None,
    description: str,
    now: datetime,
    metadata: dict[str, Any] | None = None,
    severity: str | None = None,
) -> ConsistencyAlert:
    """Open an alert, or bump the open one with the same fingerprint. Flushes, never commits."""
    key = fingerprint(alert_type, entity_type, entity_id)
    existing = session.scalars(
        select(ConsistencyAlert)
        .where(ConsistencyAlert.fingerprint == key, ConsistencyAlert.status != "resolved")
        .limit(1)
    ).first()
    if existing is not None:
        existing.occurrences += 1
        existing.last_seen_at = now
        existing.description = description
        existing.metadata_ = {**(existing.metadata_ or {}), **(metadata or {})}
        session.flush()
        return existing
    alert = ConsistencyAlert(
        alert_type=alert_type,
        severity=severity or severity_of(alert_type),
        entity_type=entity_type,
        entity_id=entity_id,
        description=description,
        metadata_=metadata or {},
        detected_at=now,
        last_seen_at=now,
        fingerprint=key,
        status="open",
        occurrences=1,
    )
    session.add(alert)
    session.flush()
    return alert


class _JsonObject(GenericFunction[Any]):
    """``json_object(k1, v1, …)`` on SQLite, ``jsonb_build_object`` on PostgreSQL."""

    type = JSONDocument
    name = "bookingguard_json_object"
    inherit_cache = True


@compiles(_JsonObject)
def _json_object_sqlite(element: _JsonObject, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clause_expr.element, **kw)})"


@compiles(_JsonObject, "postgresql")
def _json_object_postgresql(element: _JsonObject, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_build_object({compiler.process(element.clause_expr.element, **kw)})"


def json_object(pairs: dict[str, ColumnElement[Any]]) -> ColumnElement[Any]:
    """A JSON object built in SQL: lets one INSERT … SELECT write per-row metadata."""

    arguments: list[ColumnElement[Any]] = []
    for key, value in pairs.items():
        arguments.extend((literal(key), value))
    return _JsonObject(*arguments)
