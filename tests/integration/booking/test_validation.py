"""PostBookingValidator on both dialects: each check fires, a good booking passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, update

from bookingguard.booking import BookingMetrics, PostBookingValidator, ValidationResult
from bookingguard.db.models import Appointment, Call
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _validator(now: datetime = NOW, **kwargs: object) -> PostBookingValidator:
    return PostBookingValidator(max_appointment_age_seconds=300, clock=lambda: now, **kwargs)  # type: ignore[arg-type]


def _booked(
    database: TestDatabase, *, created_at: datetime = NOW, **overrides: object
) -> tuple[int, int]:
    """A call with one appointment inserted (the triggers link the call)."""
    with UnitOfWork(database.sessions) as uow:
        call = Call(retell_call_id="call-v", direction="inbound")
        uow.session.add(call)
        uow.session.flush()
        values: dict[str, object] = {
            "call_id": call.id,
            "event_type_id": 42,
            "calcom_v2_booking_id": 9001,
            "calcom_booking_uid": "uid-9001",
            "starts_at": NOW + timedelta(days=1),
            "ends_at": NOW + timedelta(days=1, minutes=30),
            "status": "booked",
            "idempotency_key": "key-v",
            "created_at": created_at,
            "updated_at": created_at,
        }
        values.update(overrides)
        appointment = Appointment(**values)
        uow.session.add(appointment)
        uow.session.flush()
        uow.commit()
        return call.id, appointment.id


def _validate(
    database: TestDatabase,
    validator: PostBookingValidator,
    call_id: int,
    appointment_id: int | None,
) -> ValidationResult:
    with UnitOfWork(database.sessions) as uow:
        return validator.validate(
            uow.session.connection(), call_id=call_id, appointment_id=appointment_id
        )


def test_good_booking_passes(database: TestDatabase) -> None:
    """A committed appointment with a linked call passes all five checks."""
    call_id, appointment_id = _booked(database)
    result = _validate(database, _validator(), call_id, appointment_id)
    assert result.success, result
    assert result.reason is None
    assert result.details["call_flags"]["appointment_made"] is True


def test_latest_appointment_of_call_is_found_without_id(database: TestDatabase) -> None:
    """Without an appointment id the call's latest appointment is validated."""
    call_id, appointment_id = _booked(database)
    result = _validate(database, _validator(), call_id, None)
    assert result.success
    assert result.details["appointment_id"] == appointment_id


def test_missing_appointment(database: TestDatabase) -> None:
    """No appointment: appointment_not_found."""
    call_id, _ = _booked(database)
    result = _validate(database, _validator(), call_id, 999_999)
    assert (result.success, result.reason) == (False, "appointment_not_found")


def test_other_calls_appointment(database: TestDatabase) -> None:
    """An appointment of another call: call_linkage_mismatch."""
    call_id, appointment_id = _booked(database)
    result = _validate(database, _validator(), call_id + 1000, appointment_id)
    assert result.reason == "call_linkage_mismatch"
    assert result.details["appointment_call_id"] == call_id


def test_missing_calcom_id(database: TestDatabase) -> None:
    """An appointment without its Cal.com booking id: missing_calcom_booking_id."""
    call_id, appointment_id = _booked(database, calcom_v2_booking_id=None)
    result = _validate(database, _validator(), call_id, appointment_id)
    assert result.reason == "missing_calcom_booking_id"


@pytest.mark.parametrize(("age", "reason"), [(299, None), (301, "appointment_too_old")])
def test_age_check_fires_past_the_maximum(
    database: TestDatabase, age: int, reason: str | None
) -> None:
    """The age check passes at 299 s and fires at 301 s (the predecessor's never fired)."""
    call_id, appointment_id = _booked(database)
    result = _validate(database, _validator(NOW + timedelta(seconds=age)), call_id, appointment_id)
    assert result.reason == reason
    assert result.details["age_seconds"] == pytest.approx(age)


def test_unlinked_call_flags(database: TestDatabase) -> None:
    """A call whose flags do not say booked: call_flags_inconsistent."""
    call_id, appointment_id = _booked(database)
    with UnitOfWork(database.sessions) as uow:
        uow.session.execute(
            update(Call).where(Call.id == call_id).values(appointment_link_status="unlinked")
        )
        uow.commit()
    result = _validate(database, _validator(), call_id, appointment_id)
    assert result.reason == "call_flags_inconsistent"
    assert result.details["call_flags"]["appointment_link_status"] == "unlinked"


def test_checks_stop_at_first_failure(database: TestDatabase) -> None:
    """Early exit: a missing Cal.com id is reported even when the appointment is also too old."""
    call_id, appointment_id = _booked(database, calcom_booking_uid=None)
    result = _validate(database, _validator(NOW + timedelta(hours=1)), call_id, appointment_id)
    assert result.reason == "missing_calcom_booking_id"
    assert "age_seconds" not in result.details


def test_one_query(database: TestDatabase) -> None:
    """A full validation issues one statement (the issue allows two)."""
    call_id, appointment_id = _booked(database)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        with UnitOfWork(database.sessions) as uow:
            statements.clear()
            result = _validator().validate(
                uow.session.connection(), call_id=call_id, appointment_id=appointment_id
            )
            queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    assert result.success
    assert len(queries) == 1


def test_duration_is_measured_per_call(database: TestDatabase) -> None:
    """Each validation times itself alone (the predecessor's static start time accumulated)."""
    call_id, appointment_id = _booked(database)
    ticks = iter([10.0, 10.004, 50.0, 50.002])
    registry = CollectorRegistry()
    validator = _validator(metrics=BookingMetrics(registry), timer=lambda: next(ticks))
    first = _validate(database, validator, call_id, appointment_id)
    second = _validate(database, validator, call_id, 999_999)
    assert first.details["duration_ms"] == pytest.approx(4.0)
    assert second.details["duration_ms"] == pytest.approx(2.0)
    count = registry.get_sample_value
    assert count("bookingguard_validation_duration_seconds_count", {"outcome": "success"}) == 1
    assert count("bookingguard_validation_duration_seconds_count", {"outcome": "failure"}) == 1
    assert count("bookingguard_validation_failures_total", {"reason": "appointment_not_found"}) == 1
