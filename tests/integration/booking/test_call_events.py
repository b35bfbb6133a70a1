"""Call lifecycle events in batches and through the group-committing recorder, on both dialects."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from bookingguard.booking.calls import (
    CallEvent,
    CallEventRecorder,
    record_call_event,
    record_call_events,
)
from bookingguard.db.models import Appointment, Call, WebhookEvent
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
STARTED = datetime(2026, 12, 1, 8, 58, tzinfo=UTC)
ENDED = datetime(2026, 12, 1, 8, 59, tzinfo=UTC)


def started(
    call_id: str, *, direction: str = "inbound", from_number: str = "+4930111"
) -> CallEvent:
    return CallEvent(
        event="call_started",
        retell_call_id=call_id,
        direction=direction,
        from_number=from_number,
        call_status="registered",
        started_at=STARTED,
    )


def analyzed(call_id: str, outcome: str = "voicemail_reached") -> CallEvent:
    return CallEvent(
        event="call_analyzed",
        retell_call_id=call_id,
        call_status="ended",
        ended_at=ENDED,
        analysis_outcome=outcome,
    )


def stored_calls(database: TestDatabase) -> dict[str, tuple[object, ...]]:
    with UnitOfWork(database.sessions) as uow:
        calls = uow.session.scalars(select(Call)).all()
        return {
            call.retell_call_id: (
                call.direction,
                call.from_number,
                call.call_status,
                call.started_at,
                call.ended_at,
                call.session_outcome,
            )
            for call in calls
            if call.retell_call_id is not None
        }


def count_events(database: TestDatabase) -> int:
    with UnitOfWork(database.sessions) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


@pytest.fixture
def commits(database: TestDatabase) -> Iterator[list[int]]:
    """Every commit on the test's engine, counted."""
    seen: list[int] = []

    def on_commit(_connection: object) -> None:
        seen.append(1)

    event.listen(database.engine, "commit", on_commit)
    yield seen
    event.remove(database.engine, "commit", on_commit)


def test_a_batch_stores_what_the_events_one_by_one_store(database: TestDatabase) -> None:
    """Started and analyzed of one call, a repeat and an existing call: same rows either way."""
    with UnitOfWork(database.sessions) as uow:
        record_call_event(uow.session, started("call_old"), now=NOW)
        uow.commit()
    batch = [
        started("call_a"),
        analyzed("call_a"),
        started("call_a", from_number="+4930999"),
        analyzed("call_old", outcome="dial_busy"),
        started("call_old"),
    ]
    with UnitOfWork(database.sessions) as uow:
        recorded = record_call_events(uow.session, batch, now=NOW)
        uow.commit()
    assert recorded == [True, True, False, True, False]
    assert stored_calls(database) == {
        "call_a": ("inbound", "+4930111", "ended", STARTED, ENDED, "voicemail"),
        "call_old": ("inbound", "+4930111", "ended", STARTED, ENDED, "abandoned"),
    }
    assert count_events(database) == 4


def test_an_analysis_leaves_what_it_does_not_say_and_a_booking_alone(
    database: TestDatabase,
) -> None:
    """An analysis of an outbound, booked call: its status and end change, nothing else."""
    with UnitOfWork(database.sessions) as uow:
        record_call_event(uow.session, started("call_1", direction="outbound"), now=NOW)
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        call_id = uow.session.scalars(select(Call.id)).one()
        uow.session.add(Appointment(call_id=call_id, status="booked", calcom_booking_uid="uid-1"))
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        recorded = record_call_events(uow.session, [analyzed("call_1")], now=NOW)
        uow.commit()
    assert recorded == [True]
    assert stored_calls(database)["call_1"] == (
        "outbound",
        "+4930111",
        "ended",
        STARTED,
        ENDED,
        "appointment_booked",
    )


def test_a_batch_is_one_statement_on_postgresql(database: TestDatabase) -> None:
    """PostgreSQL stores a batch of new and known calls in one statement; SQLite in four."""
    with UnitOfWork(database.sessions) as uow:
        record_call_event(uow.session, started("call_old"), now=NOW)
        uow.commit()
    statements: list[str] = []

    def on_execute(*args: object) -> None:
        if not str(args[2]).startswith("BEGIN"):  # SQLite's own BEGIN IMMEDIATE
            statements.append(str(args[2]))

    event.listen(database.engine, "before_cursor_execute", on_execute)
    try:
        with UnitOfWork(database.sessions) as uow:
            record_call_events(uow.session, [started("call_new"), analyzed("call_old")], now=NOW)
            uow.commit()
    finally:
        event.remove(database.engine, "before_cursor_execute", on_execute)
    assert len(statements) == (1 if database.dialect == "postgresql" else 4)
    assert sorted(stored_calls(database)) == ["call_new", "call_old"]


def test_a_delivery_racing_another_transaction_is_not_recorded_twice(
    database: TestDatabase,
) -> None:
    """The same event in two transactions: the second waits for the first and is not new."""
    first_wrote = threading.Event()
    second: list[list[bool]] = []

    def deliver_again() -> None:
        first_wrote.wait(timeout=30)
        with UnitOfWork(database.sessions) as uow:
            second.append(record_call_events(uow.session, [started("call_1")], now=NOW))
            uow.commit()

    racer = threading.Thread(target=deliver_again)
    racer.start()
    with UnitOfWork(database.sessions) as uow:
        first = record_call_events(uow.session, [started("call_1")], now=NOW)
        first_wrote.set()
        racer.join(timeout=0.5)
        assert racer.is_alive(), "the second delivery must wait for the first's transaction"
        uow.commit()
    racer.join(timeout=30)
    assert (first, second) == ([True], [[False]])
    assert count_events(database) == 1


async def test_events_arriving_together_share_commits(
    database: TestDatabase, commits: list[int]
) -> None:
    """Sixty concurrent events are all stored, in far fewer transactions than events."""
    recorder = CallEventRecorder(database.sessions, clock=lambda: NOW)
    events = [started(f"call_{index}") for index in range(30)]
    events += [analyzed(f"call_{index}") for index in range(30)]
    results = await asyncio.gather(*(recorder.record(item) for item in events))
    assert results == [True] * 60
    assert len(commits) <= 5
    calls = stored_calls(database)
    assert len(calls) == 30
    assert all(row[4] == ENDED and row[5] == "voicemail" for row in calls.values())
    assert count_events(database) == 60


async def test_one_bad_event_fails_alone(database: TestDatabase) -> None:
    """A batch broken by one event's constraint violation stores the others; only it fails."""
    recorder = CallEventRecorder(database.sessions, clock=lambda: NOW)
    good = [started(f"call_{index}") for index in range(5)]
    bad = started("call_bad", direction="sideways")
    outcomes = await asyncio.gather(
        *(recorder.record(item) for item in [*good[:2], bad, *good[2:]]), return_exceptions=True
    )
    assert outcomes[:2] == [True, True]
    assert outcomes[3:] == [True, True, True]
    assert isinstance(outcomes[2], IntegrityError)
    assert sorted(stored_calls(database)) == [f"call_{index}" for index in range(5)]
    assert count_events(database) == 5


async def test_a_lone_event_is_committed_before_record_returns(database: TestDatabase) -> None:
    """With nothing else queued, the event is written at once and a repeat is not new."""
    recorder = CallEventRecorder(database.sessions, clock=lambda: NOW)
    assert await recorder.record(started("call_1")) is True
    assert stored_calls(database)["call_1"][0] == "inbound"
    assert await recorder.record(started("call_1")) is False
