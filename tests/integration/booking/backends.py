"""The booking store's implementations side by side, each with a view of what it stored.

``backend`` fixtures give one ``Backend`` per implementation (memory, SQLite,
PostgreSQL), so the contract suite and the service's tests run over every one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from bookingguard.booking import SqlBookingStore
from bookingguard.booking.store import BookingStore
from bookingguard.db.models import (
    Appointment,
    Call,
    ConsistencyAlert,
    ManualReviewItem,
    NotificationOutbox,
)
from bookingguard.db.spool import Spool
from bookingguard.db.uow import UnitOfWork
from bookingguard.testing.booking import MemoryBookingStore, StoredCall
from tests.conftest import TestDatabase

STORE_KINDS = ["memory", "sqlite", "postgresql"]


@dataclass(frozen=True)
class CallFlags:
    """A call's booking flags, however the store keeps them."""

    appointment_made: bool
    session_outcome: str | None
    appointment_link_status: str | None
    booking_failed: bool
    booking_failure_reason: str | None
    requires_manual_processing: bool


@dataclass(frozen=True)
class AppointmentView:
    """An appointment's columns the booking path writes."""

    id: int
    calcom_booking_uid: str | None
    calcom_v2_booking_id: int | None
    status: str
    idempotency_key: str | None
    call_id: int | None = None


class Backend:
    """One ``BookingStore`` implementation and a view of what it stored, with a spool."""

    def __init__(self, kind: str, database: TestDatabase | None, spool_path: Path) -> None:
        self.kind = kind
        self.database = database
        self.spool = Spool(spool_path)
        self.memory = MemoryBookingStore() if database is None else None
        self.store: BookingStore = (
            self.memory if self.memory is not None else SqlBookingStore(self._sql.sessions)
        )

    @property
    def _sql(self) -> TestDatabase:
        assert self.database is not None
        return self.database

    def add_call(self, retell_call_id: str) -> int:
        """A call announced by a Retell webhook before the booking."""
        if self.memory is not None:
            return self.memory.add_call(retell_call_id).id
        with UnitOfWork(self._sql.sessions) as uow:
            call = Call(retell_call_id=retell_call_id, direction="inbound")
            uow.session.add(call)
            uow.commit()
            return call.id

    def add_webhook_appointment(
        self, *, call_id: int, calcom_booking_uid: str, starts_at: datetime, now: datetime
    ) -> int:
        """An appointment stored by the Cal.com webhook: no idempotency key."""
        if self.memory is not None:
            return self.memory.add_appointment(
                call_id=call_id, calcom_booking_uid=calcom_booking_uid, starts_at=starts_at, now=now
            )
        with self._sql.engine.begin() as connection:
            appointment_id: int = connection.execute(
                insert(Appointment)
                .values(
                    call_id=call_id,
                    calcom_booking_uid=calcom_booking_uid,
                    starts_at=starts_at,
                    status="booked",
                    created_at=now,
                )
                .returning(Appointment.id)
            ).scalar_one()
        return appointment_id

    def flags(self, retell_call_id: str) -> CallFlags:
        call: StoredCall | Call
        if self.memory is not None:
            call = self.memory.call(retell_call_id)
        else:
            with UnitOfWork(self._sql.sessions) as uow:
                call = uow.session.scalars(
                    select(Call).where(Call.retell_call_id == retell_call_id)
                ).one()
        return CallFlags(
            call.appointment_made,
            call.session_outcome,
            call.appointment_link_status,
            call.booking_failed,
            call.booking_failure_reason,
            call.requires_manual_processing,
        )

    def appointments(self) -> list[AppointmentView]:
        if self.memory is not None:
            return [
                AppointmentView(
                    a.id,
                    a.calcom_booking_uid,
                    a.calcom_v2_booking_id,
                    a.status,
                    a.idempotency_key,
                    a.call_id,
                )
                for a in self.memory.appointments
            ]
        with UnitOfWork(self._sql.sessions) as uow:
            return [
                AppointmentView(
                    a.id,
                    a.calcom_booking_uid,
                    a.calcom_v2_booking_id,
                    a.status,
                    a.idempotency_key,
                    a.call_id,
                )
                for a in uow.session.scalars(select(Appointment).order_by(Appointment.id))
            ]

    def review_reasons(self) -> list[str]:
        """The review items filed, by reason."""
        if self.memory is not None:
            return [record.kind for record in self.memory.records]
        with UnitOfWork(self._sql.sessions) as uow:
            return list(uow.session.scalars(select(ManualReviewItem.reason)))

    def review_items(self, retell_call_id: str) -> int:
        """How many review items the call has (open or closed)."""
        if self.memory is not None:
            call_id = self.memory.call(retell_call_id).id
            return len([record for record in self.memory.records if record.call_id == call_id])
        with UnitOfWork(self._sql.sessions) as uow:
            return len(
                uow.session.scalars(
                    select(ManualReviewItem.id)
                    .join(Call, Call.id == ManualReviewItem.call_id)
                    .where(Call.retell_call_id == retell_call_id)
                ).all()
            )

    def notices(self) -> list[str]:
        """The outbox's messages, by kind (the memory store sends none)."""
        if self.memory is not None:
            return [record.kind for record in self.memory.records if record.alerted]
        with UnitOfWork(self._sql.sessions) as uow:
            return list(uow.session.scalars(select(NotificationOutbox.kind)))

    def alert_types(self) -> list[str]:
        """The alerts the booking path raised (not the database's own corrections)."""
        if self.memory is not None:
            return [record.kind for record in self.memory.records if record.alerted]
        with UnitOfWork(self._sql.sessions) as uow:
            return list(
                uow.session.scalars(
                    select(ConsistencyAlert.alert_type).where(
                        ConsistencyAlert.alert_type != "session_outcome_mismatch"
                    )
                )
            )

    @contextmanager
    def failing_claim_writes(self) -> Iterator[None]:
        """The store rejects every write to a claim while active (a database trigger that
        raises): the claim is taken, the booking cannot be recorded in it."""
        if self.memory is not None:
            self.memory.fail_writes = OperationalError(
                "INSERT INTO appointments", {}, RuntimeError("appointments rejected")
            )
            try:
                yield
            finally:
                self.memory.fail_writes = None
            return
        with self._sql.engine.begin() as connection:
            if self._sql.dialect == "postgresql":
                connection.exec_driver_sql(
                    "CREATE OR REPLACE FUNCTION test_reject_appointment() RETURNS trigger"
                    " LANGUAGE plpgsql"
                    " AS $$ BEGIN RAISE EXCEPTION 'appointments rejected'; END $$"
                )
                connection.exec_driver_sql(
                    "CREATE TRIGGER test_reject_appointment BEFORE UPDATE ON appointments"
                    " FOR EACH ROW WHEN (OLD.status = 'pending_creation')"
                    " EXECUTE FUNCTION test_reject_appointment()"
                )
            else:
                connection.exec_driver_sql(
                    "CREATE TRIGGER test_reject_appointment BEFORE UPDATE ON appointments"
                    " WHEN OLD.status = 'pending_creation'"
                    " BEGIN SELECT RAISE(ABORT, 'appointments rejected'); END"
                )
        try:
            yield
        finally:
            with self._sql.engine.begin() as connection:
                if self._sql.dialect == "postgresql":
                    connection.exec_driver_sql(
                        "DROP TRIGGER test_reject_appointment ON appointments"
                    )
                    connection.exec_driver_sql("DROP FUNCTION test_reject_appointment()")
                else:
                    connection.exec_driver_sql("DROP TRIGGER test_reject_appointment")


def make_backend(kind: str, request: pytest.FixtureRequest) -> Backend:
    """The backend of ``kind``, its database (if any) from the suite's fixtures, and a spool
    in the test's temporary directory."""
    spool_path: Path = request.getfixturevalue("tmp_path") / "spool.db"
    if kind == "memory":
        return Backend(kind, None, spool_path)
    fixture = "sqlite_database" if kind == "sqlite" else "postgres_database"
    database: TestDatabase = request.getfixturevalue(fixture)
    return Backend(kind, database, spool_path)
