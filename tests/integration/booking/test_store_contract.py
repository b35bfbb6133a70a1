"""The ``BookingStore`` contract, run over every implementation: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from bookingguard.booking import RollbackFailedError
from bookingguard.booking.store import (
    AppointmentReadBack,
    BookingStore,
    FailureRecord,
    NewAppointment,
    NewClaim,
    ReadBack,
)
from bookingguard.db.spool import (
    BOOKING_FAILED,
    CHANGE_FAILED,
    COMPENSATION_FAILED,
    RESCHEDULE_UNRECORDED,
)
from tests.integration.booking.backends import STORE_KINDS, Backend, CallFlags, make_backend

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SLOT = datetime(2026, 12, 3, 14, tzinfo=UTC)


@pytest.fixture(params=STORE_KINDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    backend = make_backend(request.param, request)
    try:
        yield backend
    finally:
        await backend.store.aclose()


def _appointment(call_id: int, *, key: str = "key-1", uid: str = "uid-1") -> NewAppointment:
    return NewAppointment(
        call_id=call_id,
        event_type_id=42,
        calcom_v2_booking_id=abs(hash(uid)) % 1_000_000,
        calcom_booking_uid=uid,
        starts_at=SLOT,
        ends_at=SLOT + timedelta(minutes=30),
        idempotency_key=key,
        now=NOW,
    )


async def _read(appointment_id: int, read: ReadBack) -> AppointmentReadBack | None:
    return await read()


def _failure(
    retell_call_id: str = "call_1",
    *,
    call_id: int | None = None,
    reason: str = "calcom_unavailable",
    details: dict[str, object] | None = None,
) -> FailureRecord:
    return FailureRecord(
        kind=BOOKING_FAILED,
        retell_call_id=retell_call_id,
        call_id=call_id,
        reason=reason,
        details=details or {},
        at=NOW,
    )


def _compensation_failure(call_id: int | None, retell_call_id: str = "call_1") -> FailureRecord:
    return FailureRecord(
        kind=COMPENSATION_FAILED,
        retell_call_id=retell_call_id,
        call_id=call_id,
        reason=COMPENSATION_FAILED,
        details={"calcom_booking_uid": "uid-1", "error": "503"},
        at=NOW,
    )


def _claim(retell_call_id: str = "call_1", key: str = "key-1") -> NewClaim:
    return NewClaim(
        retell_call_id=retell_call_id, key=key, event_type_id=42, starts_at=SLOT, now=NOW
    )


async def _book(
    store: BookingStore, appointment: NewAppointment, retell_call_id: str = "call_1"
) -> tuple[int, AppointmentReadBack | None]:
    """The booking path's two writes: the key claimed, then the claim filled."""
    await store.claim(_claim(retell_call_id, appointment.idempotency_key))
    return await store.write_and_link(appointment, _read)


async def test_look_up_creates_the_call_once(backend: Backend) -> None:
    """A call no webhook announced is created by the first look-up and found by the next."""
    first_id, first_stored = await backend.store.look_up("call_new", "key-1")
    second_id, second_stored = await backend.store.look_up("call_new", "key-1")
    assert first_id == second_id
    assert first_stored is second_stored is None


async def test_write_and_link_links_the_call_and_reads_back_what_it_stored(
    backend: Backend,
) -> None:
    """The write links the call; the read-back on its connection sees the committed row."""
    call_id = backend.add_call("call_1")
    appointment_id, row = await _book(backend.store, _appointment(call_id))
    assert row is not None
    assert (row.id, row.call_id, row.calcom_booking_uid) == (appointment_id, call_id, "uid-1")
    assert row.calcom_v2_booking_id is not None
    assert row.created_at == NOW
    assert (row.flags_call_id, row.appointment_made, row.session_outcome) == (
        call_id,
        True,
        "appointment_booked",
    )
    assert row.appointment_link_status == "linked"
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.booking_failed) == (True, False)


async def test_look_up_finds_the_appointment_stored_for_the_key(backend: Backend) -> None:
    """Once written, the key's look-up returns the appointment, its start in UTC."""
    call_id = backend.add_call("call_1")
    appointment_id, _ = await _book(backend.store, _appointment(call_id))
    found_call, stored = await backend.store.look_up("call_1", "key-1")
    assert found_call == call_id
    assert stored is not None
    assert (stored.appointment_id, stored.call_id, stored.status) == (
        appointment_id,
        call_id,
        "booked",
    )
    assert (stored.start, stored.calcom_booking_uid) == (SLOT, "uid-1")
    assert (await backend.store.look_up("call_1", "key-other"))[1] is None


@pytest.mark.parametrize(
    ("key", "uid", "left"),
    [
        ("key-1", "uid-2", [("key-1", "uid-1", "booked")]),
        ("key-2", "uid-1", [("key-1", "uid-1", "booked"), ("key-2", None, "pending_creation")]),
    ],
)
async def test_a_second_write_of_the_key_or_the_booking_is_an_integrity_error(
    backend: Backend, key: str, uid: str, left: list[tuple[str, str | None, str]]
) -> None:
    """A claim is filled once, and a Cal.com booking is stored once: a second write of the
    key, or of the booking into another key's claim, is an IntegrityError."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, _appointment(call_id))
    with pytest.raises(IntegrityError):
        await _book(backend.store, _appointment(call_id, key=key, uid=uid))
    stored = [(a.idempotency_key, a.calcom_booking_uid, a.status) for a in backend.appointments()]
    assert stored == left


async def test_a_key_is_claimed_once_and_the_claim_links_nothing(backend: Backend) -> None:
    """The first claim of a key wins (the call created for it); the next finds that claim.
    A claim is not live: the call is not booked by it."""
    first = await backend.store.claim(_claim("call_new"))
    second = await backend.store.claim(_claim("call_new"))
    assert (first.won, second.won) == (True, False)
    assert first.call_id == second.call_id
    assert first.appointment == second.appointment
    claim = first.appointment
    assert (claim.status, claim.claimed, claim.call_id) == ("pending_creation", True, first.call_id)
    assert (claim.start, claim.calcom_booking_uid, claim.updated_at) == (SLOT, None, NOW)
    assert (await backend.store.look_up("call_new", "key-1"))[1] == claim
    flags = backend.flags("call_new")
    assert (flags.appointment_made, flags.appointment_link_status) == (False, None)


async def test_concurrent_claims_of_a_key_have_one_winner(backend: Backend) -> None:
    """Claims of one key at once (the call announced): exactly one wins, all name one row."""
    backend.add_call("call_1")
    claimed = await asyncio.gather(*(backend.store.claim(_claim()) for _ in range(4)))
    assert [c.won for c in claimed].count(True) == 1
    assert len({c.appointment.appointment_id for c in claimed}) == 1


async def test_a_released_claim_frees_the_key(backend: Backend) -> None:
    """Released (Cal.com booked nothing), the key can be claimed again; a filled claim is no
    longer a claim to release, nor a claim to fill."""
    first = await backend.store.claim(_claim())
    await backend.store.release_claim(first.appointment.appointment_id)
    assert backend.appointments() == []
    assert (await backend.store.look_up("call_1", "key-1"))[1] is None
    with pytest.raises(IntegrityError):
        await backend.store.write_and_link(_appointment(first.call_id), _read)
    again = await backend.store.claim(_claim())
    assert again.won
    await backend.store.write_and_link(_appointment(again.call_id), _read)
    await backend.store.release_claim(again.appointment.appointment_id)
    assert [a.status for a in backend.appointments()] == ["booked"]


async def test_a_claim_is_taken_over_only_as_it_was_seen(backend: Backend) -> None:
    """A stale claim is taken over by whoever saw it as it is: the first taker changes it,
    so a second taker (or one after it was filled) gets False."""
    claim = (await backend.store.claim(_claim())).appointment
    later = NOW + timedelta(minutes=5)
    assert await backend.store.take_over_claim(claim.appointment_id, seen=NOW, now=later)
    assert not await backend.store.take_over_claim(claim.appointment_id, seen=NOW, now=later)
    _, stored = await backend.store.look_up("call_1", "key-1")
    assert stored is not None
    assert (stored.status, stored.updated_at) == ("pending_creation", later)
    await backend.store.write_and_link(_appointment(claim.call_id or 0), _read)
    assert not await backend.store.take_over_claim(claim.appointment_id, seen=NOW, now=later)


async def test_a_closed_claim_is_spent_and_never_filled(backend: Backend) -> None:
    """Closed (Cal.com booked for it, the booking could not be stored), the claim is
    cancelled: its key is not claimed again, the booking's write finds no claim to fill,
    and a second close (or one of a filled claim) gets False and changes nothing."""
    first = await backend.store.claim(_claim())
    later = NOW + timedelta(minutes=1)
    assert await backend.store.close_claim(first.appointment.appointment_id, later)
    assert not await backend.store.close_claim(first.appointment.appointment_id, later)
    _, stored = await backend.store.look_up("call_1", "key-1")
    assert stored is not None
    assert (stored.status, stored.updated_at) == ("cancelled", later)
    with pytest.raises(IntegrityError):
        await backend.store.write_and_link(_appointment(first.call_id), _read)
    again = await backend.store.claim(_claim())
    assert not again.won
    assert [a.status for a in backend.appointments()] == ["cancelled"]

    other = await backend.store.claim(replace(_claim(), key="key-2"))
    await backend.store.write_and_link(_appointment(other.call_id, key="key-2", uid="uid-2"), _read)
    assert not await backend.store.close_claim(other.appointment.appointment_id, later)
    assert sorted(a.status for a in backend.appointments()) == ["booked", "cancelled"]


async def test_stale_claims_are_the_claims_unchanged_since_oldest_first(
    backend: Backend,
) -> None:
    """Claims unchanged since ``before`` and taken since ``created_since``, oldest change
    first, at most ``limit``: not a filled one, a fresh one or one taken before the span."""
    taken = {}
    for name, at in (
        ("old", NOW - timedelta(days=2)),
        ("b", NOW - timedelta(minutes=20)),
        ("a", NOW - timedelta(minutes=30)),
        ("filled", NOW - timedelta(minutes=40)),
        ("fresh", NOW - timedelta(minutes=1)),
    ):
        claimed = await backend.store.claim(
            replace(_claim(), retell_call_id=f"call_{name}", key=f"key-{name}", now=at)
        )
        taken[name] = claimed
    filled = taken["filled"]
    await backend.store.write_and_link(
        _appointment(filled.call_id, key="key-filled", uid="u-filled"), _read
    )
    window = {"before": NOW - timedelta(minutes=10), "created_since": NOW - timedelta(days=1)}
    stale = await backend.store.stale_claims(**window, limit=10)
    assert [(s.key, s.retell_call_id, s.call_id) for s in stale] == [
        ("key-a", "call_a", taken["a"].call_id),
        ("key-b", "call_b", taken["b"].call_id),
    ]
    first = stale[0]
    assert (first.event_type_id, first.starts_at) == (_claim().event_type_id, SLOT)
    assert first.claim == taken["a"].appointment
    assert [s.key for s in await backend.store.stale_claims(**window, limit=1)] == ["key-a"]


async def test_read_back_without_an_id_finds_the_calls_latest(backend: Backend) -> None:
    """The read-back of a call without an appointment id is its latest appointment."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, _appointment(call_id))
    later = replace(_appointment(call_id, key="k2", uid="u2"), now=NOW + timedelta(seconds=1))
    latest_id, _ = await _book(backend.store, later)
    row = await backend.store.read_back(call_id, None)
    assert row is not None
    assert row.id == latest_id
    assert await backend.store.read_back(call_id, latest_id + 100) is None


async def test_claim_stored_claims_a_webhooks_appointment_for_the_key(backend: Backend) -> None:
    """An appointment the Cal.com webhook stored (no key) is found by its booking and claimed."""
    call_id = backend.add_call("call_1")
    appointment_id = backend.add_webhook_appointment(
        call_id=call_id, calcom_booking_uid="uid-1", starts_at=SLOT, now=NOW
    )
    stored = await backend.store.claim_stored("key-1", "uid-1")
    assert stored is not None
    assert stored.appointment_id == appointment_id
    assert [a.idempotency_key for a in backend.appointments()] == ["key-1"]
    assert await backend.store.claim_stored("key-2", "uid-2") is None


async def test_claim_stored_keeps_another_keys_claim(backend: Backend) -> None:
    """An appointment already stored for another key is returned, its key unchanged."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, _appointment(call_id))
    stored = await backend.store.claim_stored("key-2", "uid-1")
    assert stored is not None
    assert stored.calcom_booking_uid == "uid-1"
    assert [a.idempotency_key for a in backend.appointments()] == ["key-1"]


async def test_cancelling_the_last_appointment_unlinks_the_call(backend: Backend) -> None:
    """A cancelled last appointment unlinks its call and moves it off 'booked'."""
    call_id = backend.add_call("call_1")
    appointment_id, _ = await _book(backend.store, _appointment(call_id))
    await backend.store.cancel_appointment(appointment_id, NOW)
    assert [a.status for a in backend.appointments()] == ["cancelled"]
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.session_outcome, flags.appointment_link_status) == (
        False,
        "appointment_cancelled",
        "unlinked",
    )


async def test_roll_back_flags_the_call_and_files_it(backend: Backend) -> None:
    """A rollback marks the booking failed, with an alert and a review item."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, _appointment(call_id))
    await backend.store.roll_back(
        call_id, reason="appointment_too_old", details={"age_seconds": 900}, now=NOW
    )
    assert backend.flags("call_1") == CallFlags(
        False, "creation_failed", "creation_failed", True, "appointment_too_old", True
    )
    assert backend.alert_types() == ["appointment_validation_failed"]
    assert backend.review_reasons() == ["appointment_validation_failed"]


async def test_roll_back_of_an_unknown_call_fails(backend: Backend) -> None:
    """Rolling back a call that does not exist raises RollbackFailedError, writing nothing."""
    with pytest.raises(RollbackFailedError):
        await backend.store.roll_back(424242, reason="x", details={}, now=NOW)
    assert backend.review_reasons() == []


async def test_record_failure_flags_an_unbooked_call(backend: Backend) -> None:
    """A booking that never happened leaves the call failed and filed for review."""
    call_id = backend.add_call("call_1")
    written = await backend.store.record_failure(_failure(call_id=call_id, details={"attempts": 3}))
    assert written == call_id
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.session_outcome, flags.appointment_link_status) == (
        False,
        "creation_failed",
        "creation_failed",
    )
    assert (flags.booking_failed, flags.booking_failure_reason) == (True, "calcom_unavailable")
    assert flags.requires_manual_processing is True
    assert backend.review_reasons() == ["booking_failed"]
    assert backend.alert_types() == []


async def test_record_failure_keeps_a_booked_calls_flags(backend: Backend) -> None:
    """A call that holds another booking stays booked when a later booking fails."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, _appointment(call_id))
    await backend.store.record_failure(_failure(call_id=call_id, reason="slot_unavailable"))
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.session_outcome, flags.appointment_link_status) == (
        True,
        "appointment_booked",
        "linked",
    )
    assert flags.booking_failed is True


async def test_record_compensation_failure_alerts_and_files(backend: Backend) -> None:
    """A booking neither recorded nor cancelled raises an alert and files a review item."""
    call_id = backend.add_call("call_1")
    await backend.store.record_failure(_compensation_failure(call_id))
    assert backend.alert_types() == ["compensation_failed"]
    assert backend.review_reasons() == ["compensation_failed"]


async def test_record_change_failure_files_it_and_keeps_the_booking(backend: Backend) -> None:
    """A move the caller asked for that failed: filed for a call-back, written once however
    often it is written, and the call's booking flags untouched."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, _appointment(call_id))
    record = FailureRecord(
        kind=CHANGE_FAILED,
        retell_call_id="call_1",
        call_id=call_id,
        reason="reschedule_failed",
        details={"requested_start": "2037-12-04T10:00:00.000Z"},
        at=NOW,
    )
    for _ in range(2):
        assert await backend.store.record_failure(record) == call_id
    assert backend.review_reasons() == ["reschedule_failed"]
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.session_outcome, flags.appointment_link_status) == (
        True,
        "appointment_booked",
        "linked",
    )
    assert (flags.booking_failed, flags.requires_manual_processing) == (False, True)
    assert backend.alert_types() == []


async def test_record_failure_of_a_call_no_webhook_announced_creates_it(
    backend: Backend,
) -> None:
    """A record with only the Retell call id creates the call, flags it and files it."""
    call_id = await backend.store.record_failure(_failure("call_unknown", reason="internal_error"))
    flags = backend.flags("call_unknown")
    assert (flags.booking_failed, flags.booking_failure_reason) == (True, "internal_error")
    assert flags.requires_manual_processing is True
    assert backend.review_items("call_unknown") == 1
    assert await backend.store.record_failure(_failure("call_unknown")) == call_id


async def test_record_failure_finds_an_existing_call_by_its_retell_id(backend: Backend) -> None:
    """Without the database's call id, the record lands on the call with that Retell id."""
    call_id = backend.add_call("call_1")
    assert await backend.store.record_failure(_failure("call_1")) == call_id
    assert backend.flags("call_1").booking_failed is True


async def test_a_failure_record_is_written_once_however_often_it_is_written(
    backend: Backend,
) -> None:
    """The same record written again (a replay after a crash) adds no review item."""
    record = _failure("call_1", details={"attempts": 3})
    first = await backend.store.record_failure(record)
    assert await backend.store.record_failure(record) == first
    assert backend.review_items("call_1") == 1
    assert backend.review_reasons() == ["booking_failed"]
    await backend.store.record_failure(_failure("call_1", reason="circuit_open"))
    assert backend.flags("call_1").booking_failure_reason == "circuit_open"


async def test_a_compensation_record_written_twice_alerts_and_notifies_once(
    backend: Backend,
) -> None:
    """A failed compensation replayed twice keeps one alert, one review item, one notice each."""
    record = _compensation_failure(None, "call_1")
    await backend.store.record_failure(record)
    notices = backend.notices()
    assert set(notices) == {"compensation_failed"}
    await backend.store.record_failure(record)
    assert backend.alert_types() == ["compensation_failed"]
    assert backend.review_items("call_1") == 1
    assert backend.notices() == notices


async def test_a_pending_appointment_is_stored_pending_and_links_the_call(
    backend: Backend,
) -> None:
    """A booking Cal.com holds for confirmation is stored pending; the call counts as booked."""
    call_id = backend.add_call("call_1")
    await _book(backend.store, replace(_appointment(call_id), status="pending"))
    assert [a.status for a in backend.appointments()] == ["pending"]
    _, stored = await backend.store.look_up("call_1", "key-1")
    assert stored is not None
    assert stored.status == "pending"
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.appointment_link_status) == (True, "linked")


async def test_latest_appointment_is_the_calls_newest_whatever_its_status(
    backend: Backend,
) -> None:
    """The call's latest appointment comes back with its status, event type and start."""
    call_id = backend.add_call("call_1")
    assert await backend.store.latest_appointment("call_1") is None
    assert await backend.store.latest_appointment("call_unknown") is None
    first_id, _ = await _book(backend.store, _appointment(call_id))
    later = replace(_appointment(call_id, key="k2", uid="u2"), now=NOW + timedelta(seconds=1))
    latest_id, _ = await _book(backend.store, later)
    await backend.store.cancel_appointment(latest_id, NOW)
    latest = await backend.store.latest_appointment("call_1")
    assert latest is not None
    assert (latest.appointment_id, latest.call_id, latest.status) == (
        latest_id,
        call_id,
        "cancelled",
    )
    assert (latest.event_type_id, latest.calcom_booking_uid, latest.start) == (42, "u2", SLOT)
    assert latest.live is False
    assert first_id != latest_id


async def test_a_claim_is_not_the_calls_latest_appointment(backend: Backend) -> None:
    """A newer claim (a second booking still at Cal.com, or its outcome unknown) is not what
    the agent moves or cancels: the call's latest appointment is still its booking."""
    call_id = backend.add_call("call_1")
    booked_id, _ = await _book(backend.store, _appointment(call_id))
    later = NewClaim(
        retell_call_id="call_1",
        key="key-2",
        event_type_id=42,
        starts_at=SLOT + timedelta(days=1),
        now=NOW + timedelta(seconds=1),
    )
    assert (await backend.store.claim(later)).won
    latest = await backend.store.latest_appointment("call_1")
    assert latest is not None
    assert (latest.appointment_id, latest.status) == (booked_id, "booked")
    claim_only = backend.add_call("call_2")
    assert (await backend.store.claim(_claim("call_2", "key-3"))).call_id == claim_only
    assert await backend.store.latest_appointment("call_2") is None


async def test_reschedule_stores_the_new_appointment_and_keeps_the_call_linked(
    backend: Backend,
) -> None:
    """After a reschedule the new appointment is the call's latest, the old one rescheduled,
    and the call stays linked and booked."""
    call_id = backend.add_call("call_1")
    old_id, _ = await _book(backend.store, _appointment(call_id))
    moved = replace(
        _appointment(call_id, key="key-moved", uid="uid-moved"),
        starts_at=SLOT + timedelta(days=1),
        ends_at=SLOT + timedelta(days=1, minutes=30),
        now=NOW + timedelta(seconds=1),
    )
    new_id = await backend.store.reschedule_appointment(old_id, moved)
    statuses = {a.id: a.status for a in backend.appointments()}
    assert statuses == {old_id: "rescheduled", new_id: "booked"}
    latest = await backend.store.latest_appointment("call_1")
    assert latest is not None
    assert (latest.appointment_id, latest.start, latest.live) == (
        new_id,
        SLOT + timedelta(days=1),
        True,
    )
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.session_outcome, flags.appointment_link_status) == (
        True,
        "appointment_booked",
        "linked",
    )


async def test_reschedule_takes_over_the_new_booking_a_webhook_stored(backend: Backend) -> None:
    """A new booking the Cal.com webhook stored first is claimed, not stored twice."""
    call_id = backend.add_call("call_1")
    old_id, _ = await _book(backend.store, _appointment(call_id))
    stored_id = backend.add_webhook_appointment(
        call_id=call_id, calcom_booking_uid="uid-moved", starts_at=SLOT, now=NOW
    )
    moved = _appointment(call_id, key="key-moved", uid="uid-moved")
    assert await backend.store.reschedule_appointment(old_id, moved) == stored_id
    views = {a.id: (a.status, a.idempotency_key) for a in backend.appointments()}
    assert views == {old_id: ("rescheduled", "key-1"), stored_id: ("booked", "key-moved")}


def _unrecorded_move(call_id: int, old_appointment_id: int, uid: str = "uid-2") -> FailureRecord:
    moved = SLOT + timedelta(days=1)
    return FailureRecord(
        kind=RESCHEDULE_UNRECORDED,
        retell_call_id="call_1",
        call_id=call_id,
        reason=RESCHEDULE_UNRECORDED,
        details={
            "appointment_id": old_appointment_id,
            "calcom_booking_uid": uid,
            "calcom_v2_booking_id": 7002,
            "event_type_id": 42,
            "starts_at": moved.isoformat(),
            "ends_at": (moved + timedelta(minutes=30)).isoformat(),
            "status": "booked",
            "idempotency_key": "move-key-1",
        },
        at=NOW,
    )


async def test_an_unrecorded_move_is_written_once(backend: Backend) -> None:
    """A move Cal.com made that the database missed, written down: the booking moved to
    becomes the call's live appointment, the old one ``rescheduled``, the call stays
    linked, nobody is asked to call back; written again, nothing changes."""
    call_id = backend.add_call("call_1")
    old_id, _ = await _book(backend.store, _appointment(call_id))
    record = _unrecorded_move(call_id, old_id)
    for _ in range(2):
        assert await backend.store.record_failure(record) == call_id
        assert [(a.calcom_booking_uid, a.status, a.call_id) for a in backend.appointments()] == [
            ("uid-1", "rescheduled", call_id),
            ("uid-2", "booked", call_id),
        ]
    latest = await backend.store.latest_appointment("call_1")
    assert latest is not None
    assert (latest.calcom_booking_uid, latest.start) == ("uid-2", SLOT + timedelta(days=1))
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.appointment_link_status) == (True, "linked")
    assert flags.requires_manual_processing is False
    assert backend.review_reasons() == []


async def test_an_unrecorded_move_keeps_what_a_webhook_stored_first(backend: Backend) -> None:
    """The booking moved to was stored (and cancelled) before the record is written: it
    stays as it is, and only the old appointment, still live, is marked."""
    call_id = backend.add_call("call_1")
    old_id, _ = await _book(backend.store, _appointment(call_id))
    other_id, _ = await _book(
        backend.store, _appointment(call_id, key="key-2", uid="uid-2"), "call_1"
    )
    await backend.store.cancel_appointment(other_id, NOW)
    await backend.store.record_failure(_unrecorded_move(call_id, old_id))
    assert [(a.calcom_booking_uid, a.status) for a in backend.appointments()] == [
        ("uid-1", "rescheduled"),
        ("uid-2", "cancelled"),
    ]


async def test_an_unrecorded_move_the_caller_cancelled_since_is_not_written(
    backend: Backend,
) -> None:
    """The old appointment was cancelled before the record is written (a cancel follows
    a move at Cal.com, cancelling the booking moved to): the move is not written, and
    the call stays unlinked."""
    call_id = backend.add_call("call_1")
    old_id, _ = await _book(backend.store, _appointment(call_id))
    await backend.store.cancel_appointment(old_id, NOW)
    await backend.store.record_failure(_unrecorded_move(call_id, old_id))
    assert [(a.calcom_booking_uid, a.status) for a in backend.appointments()] == [
        ("uid-1", "cancelled")
    ]
    flags = backend.flags("call_1")
    assert (flags.appointment_made, flags.appointment_link_status) == (False, "unlinked")
