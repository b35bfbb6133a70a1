"""rollback_on_failure on both dialects: all of it in one transaction, or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, select

from bookingguard.booking import BookingMetrics, RollbackFailedError, rollback_on_failure
from bookingguard.booking.rollback import record_compensation_failure
from bookingguard.db.models import (
    Appointment,
    Call,
    ConsistencyAlert,
    ManualReviewItem,
    NotificationOutbox,
)
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _booked_call(database: TestDatabase) -> int:
    with UnitOfWork(database.sessions) as uow:
        call = Call(retell_call_id="call-rb", direction="inbound")
        uow.session.add(call)
        uow.session.flush()
        uow.session.add(
            Appointment(
                call_id=call.id,
                calcom_v2_booking_id=1,
                calcom_booking_uid="u1",
                starts_at=NOW + timedelta(days=1),
                status="booked",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        uow.commit()
        return call.id


def _call(database: TestDatabase, call_id: int) -> Call:
    with UnitOfWork(database.sessions) as uow:
        call = uow.session.get(Call, call_id)
        assert call is not None
        return call


def test_rollback_writes_flags_alert_review_and_outbox(database: TestDatabase) -> None:
    """Flags go to creation_failed together; a critical alert, a priority-1 item, a message."""
    call_id = _booked_call(database)
    registry = CollectorRegistry()
    rollback_on_failure(
        database.sessions,
        call_id=call_id,
        reason="call_flags_inconsistent",
        details={"age_seconds": 1.5},
        now=NOW,
        metrics=BookingMetrics(registry),
    )
    call = _call(database, call_id)
    assert call.appointment_made is False
    assert call.session_outcome == "creation_failed"
    assert call.appointment_link_status == "creation_failed"
    assert call.booking_failed is True
    assert call.booking_failure_reason == "call_flags_inconsistent"
    assert call.requires_manual_processing is True
    with UnitOfWork(database.sessions) as uow:
        alerts = uow.session.scalars(
            select(ConsistencyAlert).where(
                ConsistencyAlert.alert_type != "session_outcome_mismatch"
            )
        ).all()
        items = uow.session.scalars(select(ManualReviewItem)).all()
        outbox = uow.session.scalars(select(NotificationOutbox)).all()
    assert [(a.alert_type, a.severity, a.entity_id) for a in alerts] == [
        ("appointment_validation_failed", "critical", call_id)
    ]
    assert alerts[0].metadata_ is not None
    assert alerts[0].metadata_["reason"] == "call_flags_inconsistent"
    assert alerts[0].metadata_["details"] == {"age_seconds": 1.5}
    assert [(i.call_id, i.priority, i.status) for i in items] == [(call_id, 1, "pending")]
    assert outbox
    assert {row.kind for row in outbox} == {"appointment_validation_failed"}
    assert registry.get_sample_value("bookingguard_rollbacks_total", {"outcome": "done"}) == 1


def _failing_alert_insert(database: TestDatabase) -> Iterator[None]:
    """Make the database reject every alert INSERT (the statement is sent to a missing table)."""

    def sabotage(
        conn: object, cursor: object, statement: str, parameters: object, *args: object
    ) -> tuple[str, object]:
        if statement.lstrip().upper().startswith("INSERT INTO DATA_CONSISTENCY_ALERTS"):
            statement = statement.replace("data_consistency_alerts", "no_such_table", 1)
        return statement, parameters

    event.listen(database.engine, "before_cursor_execute", sabotage, retval=True)
    try:
        yield
    finally:
        event.remove(database.engine, "before_cursor_execute", sabotage)


def test_failed_alert_insert_leaves_call_unchanged(database: TestDatabase) -> None:
    """A database error in the alert insert raises RollbackFailedError and writes nothing."""
    call_id = _booked_call(database)
    before = _call(database, call_id)
    with (
        contextmanager(_failing_alert_insert)(database),
        pytest.raises(RollbackFailedError, match="no_such_table"),
    ):
        rollback_on_failure(
            database.sessions, call_id=call_id, reason="appointment_too_old", details={}, now=NOW
        )
    after = _call(database, call_id)
    assert after.appointment_made is True
    assert after.session_outcome == before.session_outcome == "appointment_booked"
    assert after.booking_failed is False
    with UnitOfWork(database.sessions) as uow:
        assert uow.session.scalars(select(ManualReviewItem)).all() == []
        assert uow.session.scalars(select(NotificationOutbox)).all() == []


def test_rollback_of_missing_call_fails(database: TestDatabase) -> None:
    """Rolling back a call that does not exist is an error, not a silent no-op."""
    with pytest.raises(RollbackFailedError):
        rollback_on_failure(database.sessions, call_id=424242, reason="x", details={}, now=NOW)


def test_compensation_failure_is_a_critical_alert_with_one_review_item(
    database: TestDatabase,
) -> None:
    """A Cal.com booking left uncancelled is a critical alert, one review item and a notice."""
    call_id = _booked_call(database)
    with UnitOfWork(database.sessions) as uow:
        record_compensation_failure(
            uow.session, call_id=call_id, calcom_uid="u1", error="503", now=NOW
        )
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        alerts = uow.session.execute(
            select(ConsistencyAlert.alert_type, ConsistencyAlert.severity).where(
                ConsistencyAlert.alert_type == "compensation_failed"
            )
        ).all()
        reasons = list(uow.session.scalars(select(ManualReviewItem.reason)))
        notices = list(uow.session.scalars(select(NotificationOutbox.kind)))
    assert [tuple(alert) for alert in alerts] == [("compensation_failed", "critical")]
    assert reasons == ["compensation_failed"]
    assert "compensation_failed" in notices
