"""Alert recording, review filing and the outbox: the pieces booking and monitoring share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bookingguard.db.alerts import fingerprint, record_alert
from bookingguard.db.models import Call, ConsistencyAlert, ManualReviewItem, NotificationOutbox
from bookingguard.db.uow import UnitOfWork
from bookingguard.notify import Message, enqueue
from bookingguard.review import audit, file_for_review
from tests.conftest import TestDatabase

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_record_alert_deduplicates_by_fingerprint(database: TestDatabase) -> None:
    """Recording the same rule and entity twice keeps one open alert with two occurrences."""
    with UnitOfWork(database.sessions) as uow:
        for minutes in (0, 5):
            record_alert(
                uow.session,
                alert_type="missing_appointment",
                entity_type="call",
                entity_id=7,
                description="phantom",
                now=NOW + timedelta(minutes=minutes),
            )
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        alerts = uow.session.scalars(select(ConsistencyAlert)).all()
    assert len(alerts) == 1
    assert alerts[0].occurrences == 2
    assert alerts[0].severity == "critical"
    assert alerts[0].fingerprint == fingerprint("missing_appointment", "call", 7)
    assert alerts[0].last_seen_at == NOW + timedelta(minutes=5)


def test_one_open_review_item_per_call(database: TestDatabase) -> None:
    """Filing a call twice merges reasons and keeps the most urgent priority."""
    with UnitOfWork(database.sessions) as uow:
        call = Call(retell_call_id="rv-1")
        uow.session.add(call)
        uow.session.flush()
        file_for_review(
            uow.session, call_id=call.id, reason="missing_appointment", priority=2, now=NOW
        )
        item = file_for_review(
            uow.session, call_id=call.id, reason="validation_failed", priority=1, now=NOW
        )
        audit(uow.session, item=item, actor="ops", action="claim", now=NOW, ip="127.0.0.1")
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        items = uow.session.scalars(select(ManualReviewItem)).all()
    assert len(items) == 1
    assert items[0].priority == 1
    assert items[0].context is not None
    assert items[0].context["reasons"] == ["missing_appointment", "validation_failed"]


def test_outbox_rows_roll_back_with_their_transaction(database: TestDatabase) -> None:
    """A message enqueued in a transaction that rolls back is never in the outbox."""
    message = Message(kind="test", subject="s", severity="info")
    with UnitOfWork(database.sessions) as uow:
        enqueue(uow.session, message, now=NOW)
        uow.rollback()
    with UnitOfWork(database.sessions) as uow:
        enqueue(uow.session, message, now=NOW, channels=["slack"])
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        channels = uow.session.scalars(select(NotificationOutbox.channel)).all()
        pending = uow.session.scalar(select(func.count()).select_from(NotificationOutbox))
    assert channels == ["slack"]
    assert pending == 1
