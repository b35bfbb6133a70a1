"""The failure bookingguard exists to end, as a query: calls claiming a booking not there."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import Appointment, Call, is_live_appointment
from bookingguard.db.uow import UnitOfWork

__all__ = ["phantom_calls"]


def phantom_calls(sessions: sessionmaker[Session]) -> list[str]:
    """Retell call ids of calls with ``appointment_made`` and no live appointment behind them."""
    live = select(Appointment.call_id).where(
        is_live_appointment(Appointment.status), Appointment.call_id.is_not(None)
    )
    with UnitOfWork(sessions) as uow:
        return list(
            uow.session.scalars(
                select(Call.retell_call_id).where(
                    Call.appointment_made.is_(True), Call.id.not_in(live)
                )
            )
        )
