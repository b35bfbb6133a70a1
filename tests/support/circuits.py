"""A circuit the SQL store holds open with a cooldown, as a failing Cal.com leaves it."""

from __future__ import annotations

from datetime import datetime, timedelta

from bookingguard.db.models import CircuitBreakerState
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase

KEY = "appointment_booking:event_type:77"


def seed_open_circuit(database: TestDatabase, *, opened_at: datetime, cooldown: timedelta) -> None:
    """``KEY`` opened at ``opened_at`` by three failures, open for ``cooldown``."""
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(
            CircuitBreakerState(
                circuit_key=KEY,
                state="open",
                failure_count=3,
                success_count=0,
                last_failure_at=opened_at,
                opened_at=opened_at,
                open_until=opened_at + cooldown,
                forced_open=False,
                version=1,
            )
        )
        uow.commit()
