"""The demo data: realistic, deterministic, and inconsistent exactly where it says."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from sqlalchemy import Engine, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from bookingguard.db.ddl import set_triggers_enabled, trigger_status
from bookingguard.db.models import (
    ApiToken,
    Appointment,
    Call,
    CircuitBreakerState,
    CircuitBreakerTransition,
)
from bookingguard.demo import count_calls, load_demo, reset_data
from tests.conftest import TestDatabase
from tests.operator_support import NOW, make_token


def _count(engine: Engine, *conditions: object) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(Call)
        for condition in conditions:
            query = query.where(condition)  # type: ignore[arg-type]
        return int(connection.scalar(query) or 0)


def test_demo_writes_each_inconsistency_and_restores_guarantees(database: TestDatabase) -> None:
    """Phantoms, mismatches, no-direction calls, orphans, link errors: exactly the stated counts."""
    summary = load_demo(database.engine, now=NOW, seed=7, days=14, calls_per_day=50)
    engine = database.engine
    total = 14 * 50
    injected = summary.injected
    orphans_without_call = (injected["orphaned_appointment"] + 1) // 2
    assert summary.calls == total - orphans_without_call
    assert count_calls(engine) == summary.calls
    has_appointment = exists().where(Appointment.call_id == Call.id)
    phantoms = _count(engine, Call.appointment_made.is_(True), ~has_appointment)
    assert phantoms == injected["missing_appointment"]
    booked = func.coalesce(Call.session_outcome, "") == "appointment_booked"
    assert _count(engine, booked != Call.appointment_made) == injected["session_outcome_mismatch"]
    assert _count(engine, Call.direction.is_(None)) == injected["missing_direction"]
    unlinked_but_booked = _count(
        engine,
        Call.appointment_link_status == "unlinked",
        Call.appointment_made.is_(True),
        has_appointment,
    )
    assert unlinked_but_booked == injected["inconsistent_link_status"]
    assert _count(engine, Call.booking_failed.is_(True)) == injected["recent_failures"]
    assert (
        _count(engine, Call.booking_failed.is_(True), Call.started_at >= NOW - timedelta(hours=1))
        >= 1
    )
    with engine.connect() as connection:
        orphans = connection.scalar(
            select(func.count())
            .select_from(Appointment)
            .outerjoin(Call, Call.id == Appointment.call_id)
            .where((Call.id.is_(None)) | Call.appointment_made.is_(False))
            .where(Appointment.status != "cancelled")
        )
        assert orphans == injected["orphaned_appointment"]
        assert all(status.enabled for status in trigger_status(connection))
        assert connection.scalar(select(func.count()).select_from(CircuitBreakerState)) == 2
    dates = set(_days(engine))
    assert len(dates) >= 14


def _days(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [str(value)[:10] for value in connection.scalars(select(Call.started_at))]


def test_same_seed_same_data_and_reset_keeps_tokens(database: TestDatabase) -> None:
    """Two loads with one seed give identical calls; --reset empties data but not tokens."""
    make_token(database, "ops", "operate")
    load_demo(database.engine, now=NOW, seed=3, days=2, calls_per_day=40)
    first = _snapshot(database.engine)
    reset_data(database.engine)
    assert count_calls(database.engine) == 0
    load_demo(database.engine, now=NOW, seed=3, days=2, calls_per_day=40)
    assert _snapshot(database.engine) == first
    with database.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ApiToken)) == 1


def _snapshot(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Call.retell_call_id,
                Call.direction,
                Call.session_outcome,
                Call.appointment_made,
                Call.appointment_link_status,
                Call.started_at,
            ).order_by(Call.retell_call_id)
        )
        return [tuple(row) for row in rows]


def test_outcome_check_is_back_after_the_demo(postgres_database: TestDatabase) -> None:
    """On PostgreSQL the outcome CHECK backstop is re-added: with triggers off it still refuses."""
    load_demo(postgres_database.engine, now=NOW, seed=5, days=1, calls_per_day=20)
    mismatch = insert(Call).values(
        retell_call_id="after-demo", appointment_made=True, session_outcome="information_only"
    )
    with postgres_database.engine.begin() as connection:
        set_triggers_enabled(connection, enabled=False, names=["outcome"])
        with pytest.raises(IntegrityError, match="ck_calls_outcome_matches_flag"):
            connection.execute(mismatch)


def test_demo_circuits_carry_the_history_the_breaker_writes(database: TestDatabase) -> None:
    """One circuit recovered two days ago through two probes, one opened four minutes ago."""
    load_demo(database.engine, now=NOW, seed=5, days=1, calls_per_day=20)
    with database.engine.connect() as connection:
        states = connection.execute(
            select(
                CircuitBreakerState.circuit_key,
                CircuitBreakerState.state,
                CircuitBreakerState.failure_count,
                CircuitBreakerState.success_count,
                CircuitBreakerState.version,
            ).order_by(CircuitBreakerState.circuit_key)
        ).all()
        history = connection.execute(
            select(
                CircuitBreakerTransition.circuit_key,
                CircuitBreakerTransition.to_state,
                CircuitBreakerTransition.reason,
                CircuitBreakerTransition.version,
            ).order_by(CircuitBreakerTransition.circuit_key, CircuitBreakerTransition.version)
        ).all()
        opened_at = connection.scalar(
            select(CircuitBreakerState.opened_at).where(CircuitBreakerState.state == "open")
        )
    # Each state row carries the version of its circuit's last transition.
    last_version = {row.circuit_key: row.version for row in history}
    assert [tuple(row) for row in states] == [
        ("appointment_booking:event_type:1001", "closed", 0, 2, last_version[states[0][0]]),
        ("appointment_booking:event_type:1002", "open", 3, 0, last_version[states[1][0]]),
    ]
    assert [tuple(row)[:3] for row in history] == [
        ("appointment_booking:event_type:1001", "open", "failure_threshold"),
        ("appointment_booking:event_type:1001", "half_open", "cooldown_elapsed"),
        ("appointment_booking:event_type:1001", "closed", "probes_succeeded"),
        ("appointment_booking:event_type:1002", "open", "failure_threshold"),
    ]
    assert opened_at is not None
    assert opened_at.replace(tzinfo=UTC) == NOW - timedelta(minutes=4)
