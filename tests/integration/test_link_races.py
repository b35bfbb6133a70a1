"""The appointment link under concurrency (issue 14, finding 9): two transactions change
one call's appointments at once, interleaved deterministically on real connections, in
both orders and many rounds, and every call ends consistent with its live appointments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, insert, select, text

from bookingguard.db.models import Appointment, Call, live_appointment_sql
from tests.conftest import TestDatabase
from tests.support.interleave import Statement, interleave

ROUNDS = 12


@dataclass(frozen=True)
class Round:
    """One round's rows: the call raced over, its appointments, and a second call."""

    call: int
    live: tuple[int, ...]
    cancelled: int
    other_call: int
    elsewhere: int


Write = Callable[[Round], Statement]


def insert_new(r: Round) -> Statement:
    return Statement(
        "INSERT INTO appointments (call_id, status) VALUES (:call, 'booked')", {"call": r.call}
    )


def move_in(r: Round) -> Statement:
    return Statement(
        "UPDATE appointments SET call_id = :call WHERE id = :id",
        {"call": r.call, "id": r.elsewhere},
    )


def revive(r: Round) -> Statement:
    return Statement(
        "UPDATE appointments SET status = 'confirmed' WHERE id = :id", {"id": r.cancelled}
    )


def delete(index: int) -> Write:
    def write(r: Round) -> Statement:
        return Statement("DELETE FROM appointments WHERE id = :id", {"id": r.live[index]})

    return write


def set_status(index: int, status: str) -> Write:
    def write(r: Round) -> Statement:
        return Statement(
            "UPDATE appointments SET status = :status WHERE id = :id",
            {"status": status, "id": r.live[index]},
        )

    return write


def move_out(index: int) -> Write:
    def write(r: Round) -> Statement:
        return Statement(
            "UPDATE appointments SET call_id = :other WHERE id = :id",
            {"other": r.other_call, "id": r.live[index]},
        )

    return write


def insert_for_both(r: Round) -> Statement:
    return Statement(
        "INSERT INTO appointments (call_id, status) VALUES (:other, 'booked'), (:call, 'booked')",
        {"call": r.call, "other": r.other_call},
    )


def delete_from_both(r: Round) -> Statement:
    return Statement(
        "DELETE FROM appointments WHERE id IN (:first, :elsewhere)",
        {"first": r.live[0], "elsewhere": r.elsewhere},
    )


@dataclass(frozen=True)
class Race:
    """Two writes on one call's appointments; ``live`` is how many it has before them."""

    live: int
    a: Write
    b: Write
    booked_after: bool


RACES = {
    # The call gains a live appointment while it loses its only one: it stays booked.
    "insert-vs-delete": Race(1, insert_new, delete(0), booked_after=True),
    "insert-vs-cancel": Race(1, insert_new, set_status(0, "cancelled"), booked_after=True),
    "insert-vs-reschedule": Race(1, insert_new, set_status(0, "rescheduled"), booked_after=True),
    "insert-vs-move-out": Race(1, insert_new, move_out(0), booked_after=True),
    "move-in-vs-delete": Race(1, move_in, delete(0), booked_after=True),
    "move-in-vs-cancel": Race(1, move_in, set_status(0, "cancelled"), booked_after=True),
    "uncancel-vs-delete": Race(1, revive, delete(0), booked_after=True),
    "uncancel-vs-reject": Race(1, revive, set_status(0, "rejected"), booked_after=True),
    # Both calls at once, in one statement each.
    "two-calls-insert-vs-delete": Race(1, insert_for_both, delete_from_both, booked_after=True),
    # The call loses both its live appointments at once: it is no longer booked.
    "delete-vs-delete": Race(2, delete(0), delete(1), booked_after=False),
    "cancel-vs-cancel": Race(
        2, set_status(0, "cancelled"), set_status(1, "cancelled"), booked_after=False
    ),
    "delete-vs-move-out": Race(2, delete(0), move_out(1), booked_after=False),
    # The call, booked by neither yet, gains two live appointments at once.
    "insert-vs-insert": Race(0, insert_new, insert_new, booked_after=True),
    "insert-vs-uncancel": Race(0, insert_new, revive, booked_after=True),
}


def _insert_appointment(connection: Connection, call_id: int, status: str) -> int:
    key = connection.execute(
        insert(Appointment).values(call_id=call_id, status=status)
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def _insert_call(connection: Connection, retell_call_id: str) -> int:
    key = connection.execute(
        insert(Call).values(retell_call_id=retell_call_id)
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def _set_up(database: TestDatabase, name: str, *, live: int) -> Round:
    """A call with ``live`` live appointments and a cancelled one; another call with one."""
    with database.engine.begin() as connection:
        call = _insert_call(connection, f"{name}-call")
        other_call = _insert_call(connection, f"{name}-other")
        return Round(
            call=call,
            live=tuple(_insert_appointment(connection, call, "booked") for _ in range(live)),
            cancelled=_insert_appointment(connection, call, "cancelled"),
            other_call=other_call,
            elsewhere=_insert_appointment(connection, other_call, "booked"),
        )


def inconsistent_calls(database: TestDatabase) -> dict[int, tuple[object, ...]]:
    """Calls whose flag, link status or outcome disagree with having a live appointment."""
    live = live_appointment_sql("a.status")
    with database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.id, c.appointment_made, c.appointment_link_status, c.session_outcome, "
                f"EXISTS (SELECT 1 FROM appointments a WHERE a.call_id = c.id AND {live}) "
                "FROM calls c"
            )
        ).all()
    found: dict[int, tuple[object, ...]] = {}
    for call_id, made, link_status, outcome, has_live in rows:
        booked = bool(has_live)
        if (bool(made), link_status == "linked", outcome == "appointment_booked") != (
            booked,
            booked,
            booked,
        ):
            found[call_id] = (made, link_status, outcome, booked)
    return found


def _booked(database: TestDatabase, call_id: int) -> bool:
    with database.engine.connect() as connection:
        return bool(
            connection.execute(select(Call.appointment_made).where(Call.id == call_id)).scalar_one()
        )


@pytest.mark.parametrize("order", ["a-first", "b-first"])
@pytest.mark.parametrize("race", list(RACES))
def test_concurrent_appointment_writes_leave_every_call_consistent(
    database: TestDatabase, race: str, order: str
) -> None:
    """Two transactions racing on one call's appointments leave 0 inconsistent calls."""
    spec = RACES[race]
    waited = []
    for number in range(ROUNDS):
        r = _set_up(database, f"{race}-{order}-{number}", live=spec.live)
        first, second = (spec.a, spec.b) if order == "a-first" else (spec.b, spec.a)
        outcome = interleave(database.engine, [first(r)], [second(r)])
        waited.append(outcome.second_waited == (True,))
        assert inconsistent_calls(database) == {}, f"round {number}"
        assert _booked(database, r.call) is spec.booked_after
    assert all(waited), "the second writer did not wait for the first's lock on the call"


def test_two_holders_of_the_calls_key_share_lock_both_insert_without_deadlock(
    database: TestDatabase,
) -> None:
    """Two transactions that each hold the foreign-key lock on a call (each filed a review
    item for it) insert an appointment for it: the first never waits, the call is booked."""
    with database.engine.begin() as connection:
        call = _insert_call(connection, "key-share")
    file_item = Statement(
        "INSERT INTO manual_review_queue (call_id, reason, priority, status) "
        "VALUES (:call, 'race', 3, 'resolved')",
        {"call": call},
    )
    book = Statement(
        "INSERT INTO appointments (call_id, status) VALUES (:call, 'booked')", {"call": call}
    )
    outcome = interleave(database.engine, [file_item, book], [file_item, book])
    assert outcome.first_waited == (False, False)
    assert inconsistent_calls(database) == {}
    assert _booked(database, call) is True
