"""The booking's claim on its key, through ``BookingService``, over every store.

A request that finds its key claimed waits for the claim's outcome and answers from it;
a refusal frees the key; a claim whose owner is gone is resolved by looking the booking
up at Cal.com by the key, never by a blind second create. Cal.com is the stand-in; the
wait's clock and sleep are injected, so nothing here waits for real time to pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from bookingguard.api.server import build_server_app
from bookingguard.booking import BookingRequest, BookingResult, SqlBookingStore
from bookingguard.booking.claim_settler import ClaimSettler
from bookingguard.booking.claims import ClaimWaiter
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.store import BookingStore, NewClaim
from bookingguard.booking.types import IDEMPOTENCY_METADATA_KEY, RETELL_CALL_METADATA_KEY
from bookingguard.bootstrap import build_engine
from bookingguard.db.models import Appointment, Call
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.integration.booking.backends import STORE_KINDS, Backend, make_backend
from tests.integration.booking.test_service import NOW, SLOT, Rig, rig
from tests.support.booking_fakes import watched
from tests.support.calcom_standin import CalcomStandin


@pytest.fixture(params=STORE_KINDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each store: in memory, SQLite, PostgreSQL."""
    return make_backend(request.param, request)


def _request(retell_call_id: str = "call_1") -> BookingRequest:
    return BookingRequest(
        retell_call_id=retell_call_id,
        start=SLOT,
        event_type_id=42,
        name="Ada Lovelace",
        email="ada@example.com",
        time_zone="Europe/Berlin",
    )


class InstantWait:
    """The waiter's sleep and monotonic clock: each sleep moves the clock on, at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def instant_waiter(
    store: BookingStore, wait_seconds: float = 3.0
) -> tuple[ClaimWaiter, InstantWait]:
    clock = InstantWait()
    waiter = ClaimWaiter(
        store, wait_seconds=wait_seconds, sleep=clock.sleep, monotonic=clock.monotonic
    )
    return waiter, clock


async def test_a_waiting_request_answers_from_the_winners_booking(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The second request for a key, arriving while the first is at Cal.com, reads the
    claim until the first has recorded its booking, then answers with that booking."""
    gate = calcom_standin.gate("create")
    polled = asyncio.Event()

    def on_call(name: str) -> None:
        if name == "look_up":
            polled.set()

    store = watched(backend.store, on_call)
    waiter = ClaimWaiter(store, wait_seconds=30.0)
    async with rig(backend, calcom_standin, claims=waiter, store=store) as r:
        first = asyncio.create_task(r.service.book(_request()))
        assert await asyncio.to_thread(gate.wait_held, 1, 10.0)
        second = asyncio.create_task(r.service.book(_request()))
        await asyncio.wait_for(polled.wait(), 10.0)
        assert not second.done()
        gate.release()
        winner, loser = await first, await second
    assert (winner.result, loser.result) == (BookingResult.BOOKED, BookingResult.ALREADY_BOOKED)
    assert loser.appointment_id == winner.appointment_id
    assert loser.calcom_booking_uid == winner.calcom_booking_uid is not None
    assert calcom_standin.request_count("create") == 1


async def test_a_claim_still_open_when_the_wait_ends_is_still_confirming(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The owner still at Cal.com when the bounded wait ends: 'confirming', no Cal.com
    request; the owner then books, and the next request answers from its booking."""
    gate = calcom_standin.gate("create")
    waiter, clock = instant_waiter(backend.store)
    async with rig(backend, calcom_standin, claims=waiter) as r:
        first = asyncio.create_task(r.service.book(_request()))
        assert await asyncio.to_thread(gate.wait_held, 1, 10.0)
        waiting = await r.service.book(_request())
        assert waiting.result is BookingResult.CONFIRMING
        assert not waiting.booked
        assert clock.now >= 3.0
        assert calcom_standin.request_count("create") == 1
        gate.release()
        assert (await first).result is BookingResult.BOOKED
        again = await r.service.book(_request())
    assert again.result is BookingResult.ALREADY_BOOKED
    assert calcom_standin.request_count("create") == 1


async def test_a_refusal_releases_the_claim_and_a_retry_books(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Cal.com refused (the slot taken): the claim is released, nothing is left for the key,
    and the same request, once the slot is free, books."""
    taken = calcom_standin.add_booking(start=SLOT, event_type_id=42)
    async with rig(backend, calcom_standin) as r:
        refused = await r.service.book(_request())
        assert refused.result is BookingResult.SLOT_UNAVAILABLE
        assert r.appointments() == []
        calcom_standin.cancel(taken["uid"])
        retried = await r.service.book(_request())
    assert retried.result is BookingResult.BOOKED
    (appointment,) = r.appointments()
    assert (appointment.status, appointment.idempotency_key) == ("booked", _request().key)
    assert calcom_standin.request_count("create") == 2


async def _stale_claim(backend: Backend, age: timedelta) -> int:
    """A claim its owner took ``age`` ago and never settled (it crashed)."""
    claimed = await backend.store.claim(
        NewClaim(
            retell_call_id="call_1",
            key=_request().key,
            event_type_id=42,
            starts_at=SLOT,
            now=NOW - age,
        )
    )
    assert claimed.won
    return claimed.appointment.appointment_id


def _owners_booking(calcom_standin: CalcomStandin) -> dict[str, Any]:
    """What the crashed owner's create made at Cal.com before it could record it."""
    return calcom_standin.add_booking(
        start=SLOT,
        event_type_id=42,
        metadata={IDEMPOTENCY_METADATA_KEY: _request().key, RETELL_CALL_METADATA_KEY: "call_1"},
    )


async def test_a_crashed_owners_booking_is_found_by_the_key_not_created_again(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The owner booked, then crashed before recording it: a request after the claim went
    stale looks the booking up by the key and records it in the claim; no create is sent."""
    claim_id = await _stale_claim(backend, timedelta(minutes=10))
    booking = _owners_booking(calcom_standin)
    waiter, _ = instant_waiter(backend.store)
    async with rig(backend, calcom_standin, claims=waiter) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert (outcome.appointment_id, outcome.calcom_booking_uid) == (claim_id, booking["uid"])
    assert calcom_standin.request_count("create") == 0
    assert calcom_standin.request_count("list") >= 1
    (appointment,) = r.appointments()
    assert (appointment.status, appointment.calcom_booking_uid) == ("booked", booking["uid"])
    assert r.call().appointment_made is True


async def test_a_crashed_owners_cancelled_booking_spends_the_key(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The owner's booking was cancelled since: the key has had its one create; the claim is
    closed as cancelled and the request answered as failed before, with no create."""
    await _stale_claim(backend, timedelta(minutes=10))
    calcom_standin.cancel(_owners_booking(calcom_standin)["uid"])
    waiter, _ = instant_waiter(backend.store)
    async with rig(backend, calcom_standin, claims=waiter) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.PREVIOUSLY_FAILED
    assert calcom_standin.request_count("create") == 0
    assert [a.status for a in r.appointments()] == ["cancelled"]


async def test_a_crashed_owner_that_booked_nothing_is_taken_over(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Nothing at Cal.com carries the key: the stale claim is taken over and this request
    creates the booking, once."""
    claim_id = await _stale_claim(backend, timedelta(minutes=10))
    waiter, _ = instant_waiter(backend.store)
    async with rig(backend, calcom_standin, claims=waiter) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert outcome.appointment_id == claim_id
    assert calcom_standin.request_count("create") == 1


async def test_a_claim_not_yet_stale_is_left_to_its_owner(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """A claim younger than the stale age may still be at Cal.com: 'confirming', and
    neither a look-up nor a create is sent."""
    await _stale_claim(backend, timedelta(seconds=30))
    waiter, _ = instant_waiter(backend.store)
    async with rig(backend, calcom_standin, claims=waiter) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.CONFIRMING
    assert calcom_standin.requests == []
    assert [a.status for a in r.appointments()] == ["pending_creation"]


async def test_an_unknown_outcome_keeps_the_claim(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Every create timed out and no booking was found: the claim stays, so a retry within
    the stale age sends nothing to Cal.com."""
    calcom_standin.hang_next("create", seconds=2.0, times=3)
    waiter, _ = instant_waiter(backend.store)
    async with rig(backend, calcom_standin, read_timeout=0.2, claims=waiter) as r:
        failed = await r.service.book(_request())
        assert failed.result is BookingResult.CALCOM_UNAVAILABLE
        assert failed.details["outcome_unknown"] is True
        creates = calcom_standin.request_count("create")
        retried = await r.service.book(_request())
    assert retried.result is BookingResult.CONFIRMING
    assert calcom_standin.request_count("create") == creates
    assert [a.status for a in r.appointments()] == ["pending_creation"]


async def test_a_retry_answered_from_a_failed_key_writes_the_record_its_owner_did_not(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The owner cancelled its booking at Cal.com and closed the claim, then died before it
    wrote the call's failure down: the retry, told "we'll call you back" from the
    cancelled claim, writes the record itself; a second retry adds nothing."""
    claim_id = await _stale_claim(backend, timedelta(0))
    calcom_standin.cancel(_owners_booking(calcom_standin)["uid"])
    await backend.store.cancel_appointment(claim_id, NOW)
    async with rig(backend, calcom_standin) as r:
        first = await r.service.book(_request())
        second = await r.service.book(_request())
    assert (first.result, second.result) == (BookingResult.PREVIOUSLY_FAILED,) * 2
    call = r.call()
    assert (call.booking_failed, call.booking_failure_reason) == (True, "previously_failed")
    assert call.requires_manual_processing is True
    assert backend.review_items("call_1") == 1
    assert calcom_standin.request_count("create") == 0


async def test_a_retry_of_a_failure_already_written_keeps_its_reason(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The booking failed validation and was rolled back (the call flagged with why): a
    retry of the request hears the same "we'll call you back" and writes nothing over it."""
    async with rig(backend, calcom_standin, validation_clock=lambda: NOW + timedelta(days=1)) as r:
        failed = await r.service.book(_request())
        before = r.call()
        retried = await r.service.book(_request())
    assert failed.result is BookingResult.VALIDATION_FAILED
    assert retried.result is BookingResult.PREVIOUSLY_FAILED
    assert before.booking_failed is True
    assert r.call() == before
    assert backend.review_items("call_1") == 1
    assert calcom_standin.request_count("create") == 1


def _settler(r: Rig) -> ClaimSettler:
    return ClaimSettler(service=r.service, store=r.backend.store, clock=lambda: NOW)


async def test_the_settler_records_a_dead_requests_booking_found_by_the_key(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """No request comes back for a stale claim whose owner booked and died: the settler
    finds the booking by the key, records it in the claim and links the call."""
    claim_id = await _stale_claim(backend, timedelta(minutes=10))
    booking = _owners_booking(calcom_standin)
    async with rig(backend, calcom_standin) as r:
        settled = await _settler(r).settle()
    assert settled == {BookingResult.BOOKED: 1}
    assert calcom_standin.request_count("create") == 0
    (appointment,) = r.appointments()
    assert (appointment.id, appointment.status) == (claim_id, "booked")
    assert appointment.calcom_booking_uid == booking["uid"]
    assert r.call().appointment_made is True
    assert r.call().booking_failed is False


async def test_the_settler_releases_a_claim_nothing_was_booked_for(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Nothing at Cal.com carries the key: the claim is released (the key free again), and
    the call written down as a failed booking and filed for review; nothing is created.
    The metric counts it by result."""
    await _stale_claim(backend, timedelta(minutes=10))
    registry = CollectorRegistry()
    async with rig(backend, calcom_standin) as r:
        settler = ClaimSettler(
            service=r.service,
            store=backend.store,
            clock=lambda: NOW,
            metrics=BookingMetrics(registry),
        )
        settled = await settler.settle()
    assert settled == {BookingResult.CLAIM_ABANDONED: 1}
    counted = registry.get_sample_value(
        "bookingguard_claims_settled_total", {"result": "claim_abandoned"}
    )
    assert counted == 1
    assert calcom_standin.request_count("create") == 0
    assert r.appointments() == []
    call = r.call()
    assert (call.booking_failed, call.booking_failure_reason) == (True, "claim_abandoned")
    assert call.requires_manual_processing is True
    assert backend.review_items("call_1") == 1


async def test_the_settler_cancels_a_claim_whose_booking_was_cancelled(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The owner's booking was cancelled at Cal.com since: the key has had its one create,
    so the claim is closed as cancelled and the call filed."""
    await _stale_claim(backend, timedelta(minutes=10))
    calcom_standin.cancel(_owners_booking(calcom_standin)["uid"])
    async with rig(backend, calcom_standin) as r:
        settled = await _settler(r).settle()
    assert settled == {BookingResult.PREVIOUSLY_FAILED: 1}
    assert [a.status for a in r.appointments()] == ["cancelled"]
    assert r.call().booking_failure_reason == "previously_failed"
    assert backend.review_items("call_1") == 1


async def test_the_settler_leaves_a_claim_in_flight_alone(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """A claim younger than the stale age may still be at Cal.com: nothing is asked."""
    await _stale_claim(backend, timedelta(seconds=30))
    async with rig(backend, calcom_standin) as r:
        settled = await _settler(r).settle()
    assert settled == {}
    assert calcom_standin.requests == []
    assert [a.status for a in r.appointments()] == ["pending_creation"]


async def test_a_claim_the_settler_cannot_look_up_stays_for_a_later_pass(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Cal.com fails the look-up: the claim stays (nothing released, nothing filed) and is
    settled by a pass once it is stale again."""
    await _stale_claim(backend, timedelta(minutes=10))
    _owners_booking(calcom_standin)
    calcom_standin.fail_next("list", status=503)
    async with rig(backend, calcom_standin) as r:
        settler = _settler(r)
        failed = await settler.settle()
        kept = [a.status for a in r.appointments()]
        later = ClaimSettler(
            service=r.service,
            store=backend.store,
            clock=lambda: NOW + timedelta(minutes=10),
        )
        settled = await later.settle()
    assert failed == {}
    assert kept == ["pending_creation"]
    assert r.call().booking_failed is False
    assert settled == {BookingResult.BOOKED: 1}


async def test_serve_settles_stale_claims_in_the_background(
    database: TestDatabase,
    calcom_standin: CalcomStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With its background work on, the served app settles a claim left by a request that
    died: its booking, found at Cal.com by the key, is recorded and the call linked."""
    store = SqlBookingStore(database.sessions)
    taken = datetime.now(UTC) - timedelta(minutes=10)
    claimed = await store.claim(
        NewClaim(
            retell_call_id="call_1", key=_request().key, event_type_id=42, starts_at=SLOT, now=taken
        )
    )
    await store.aclose()
    booking = _owners_booking(calcom_standin)
    passes: list[Counter[BookingResult]] = []
    settled = asyncio.Event()
    settle = ClaimSettler.settle

    async def observed(self: ClaimSettler) -> Counter[BookingResult]:
        result = await settle(self)
        passes.append(result)
        settled.set()
        return result

    monkeypatch.setattr(ClaimSettler, "settle", observed)
    settings = Settings(
        database_url=database.url,
        calcom={"base_url": calcom_standin.base_url, "api_key": calcom_standin.api_key},
        spool={"path": str(tmp_path / "spool.db")},
        monitoring={"lock_dir": str(tmp_path / "locks")},
    )
    app = build_server_app(settings, background=True, engine=build_engine(settings))
    async with app.router.lifespan_context(app):
        with anyio.fail_after(30):
            await settled.wait()
    assert passes[0] == {BookingResult.BOOKED: 1}
    with database.sessions() as session:
        row = session.execute(
            select(Appointment.id, Appointment.status, Appointment.calcom_booking_uid)
        ).one()
        call = session.scalars(select(Call).where(Call.retell_call_id == "call_1")).one()
    assert tuple(row) == (claimed.appointment.appointment_id, "booked", booking["uid"])
    assert call.appointment_made is True
