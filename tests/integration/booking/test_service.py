"""BookingService against the Cal.com stand-in, on both dialects (fake breaker and retry)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from bookingguard.booking import (
    BookingRequest,
    BookingResult,
    BookingService,
    PostBookingValidator,
    SqlBookingStore,
)
from bookingguard.booking.calcom_events import apply_calcom_event
from bookingguard.booking.claims import ClaimWaiter
from bookingguard.booking.store import (
    AppointmentReadBack,
    BookingStore,
    NewAppointment,
    ReadBack,
    StoredAppointment,
)
from bookingguard.calcom import CalcomBooking, CalcomClient, CalcomWebhook, NewBooking
from bookingguard.db.ddl import set_triggers_enabled
from bookingguard.db.models import Call
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase
from tests.integration.booking.backends import (
    STORE_KINDS,
    AppointmentView,
    Backend,
    CallFlags,
    make_backend,
)
from tests.support.booking_fakes import FakeBreaker, ImmediateRetrier, watched
from tests.support.calcom_standin import CalcomStandin

T = TypeVar("T")
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SLOT = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)


@dataclass
class Rig:
    service: BookingService
    breaker: FakeBreaker
    retrier: ImmediateRetrier
    calcom: CalcomStandin
    backend: Backend
    client: CalcomClient

    def call(self, retell_call_id: str = "call_1") -> CallFlags:
        return self.backend.flags(retell_call_id)

    def appointments(self) -> list[AppointmentView]:
        return self.backend.appointments()

    def review_reasons(self) -> list[str]:
        return self.backend.review_reasons()

    def alert_types(self) -> list[str]:
        return self.backend.alert_types()


@pytest.fixture(params=STORE_KINDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """The service over each store: in memory, SQLite, PostgreSQL."""
    return make_backend(request.param, request)


@pytest.fixture(params=STORE_KINDS[1:])
def sql_backend(request: pytest.FixtureRequest) -> Backend:
    """The service over the SQL store, for what only a database has (triggers, pools, webhooks)."""
    return make_backend(request.param, request)


def _database(backend: Backend) -> TestDatabase:
    assert backend.database is not None
    return backend.database


@asynccontextmanager
async def rig(
    backend: Backend,
    calcom: CalcomStandin,
    *,
    read_timeout: float = 2.0,
    validation_clock: Callable[[], datetime] = lambda: NOW,
    breaker: FakeBreaker | None = None,
    claims: ClaimWaiter | None = None,
    store: BookingStore | None = None,
) -> AsyncIterator[Rig]:
    breaker = breaker or FakeBreaker()
    retrier = ImmediateRetrier()
    async with CalcomClient(
        base_url=calcom.base_url, api_key=calcom.api_key, read_timeout=read_timeout
    ) as client:
        service = BookingService(
            store=store or backend.store,
            calcom=client,
            breaker=breaker,
            retrier=retrier,
            validator=PostBookingValidator(max_appointment_age_seconds=300, clock=validation_clock),
            clock=lambda: NOW,
            spool=backend.spool,
            claims=claims,
        )
        try:
            yield Rig(service, breaker, retrier, calcom, backend, client)
        finally:
            await service.aclose()


def _request(retell_call_id: str = "call_1", start: datetime = SLOT) -> BookingRequest:
    return BookingRequest(
        retell_call_id=retell_call_id,
        start=start,
        event_type_id=42,
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+4930123456",
        time_zone="Europe/Berlin",
    )


async def test_good_booking(backend: Backend, calcom_standin: CalcomStandin) -> None:
    """A booking lands in Cal.com and in the database, and the call says booked."""
    async with rig(backend, calcom_standin) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert outcome.booked
    assert outcome.start == SLOT
    (booking,) = calcom_standin.bookings()
    assert booking["metadata"]["retell_call_id"] == "call_1"
    assert booking["metadata"]["bookingguard_idempotency_key"] == _request().key
    (appointment,) = r.appointments()
    assert appointment.id == outcome.appointment_id
    assert appointment.calcom_booking_uid == booking["uid"]
    assert appointment.calcom_v2_booking_id == booking["id"]
    call = r.call()
    assert (call.appointment_made, call.session_outcome, call.appointment_link_status) == (
        True,
        "appointment_booked",
        "linked",
    )
    assert r.breaker.keys == ["appointment_booking:event_type:42"]


async def test_booking_links_the_call_with_the_triggers_switched_off(
    sql_backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """During a staged roll-out (triggers off) the booking itself writes the call's flags."""
    database = _database(sql_backend)
    with database.engine.begin() as connection:
        switched = set_triggers_enabled(connection, enabled=False)
    assert "appointments_link_inserted" in switched
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(Call(retell_call_id="call_1", direction="inbound"))
        uow.commit()
    async with rig(sql_backend, calcom_standin) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    with UnitOfWork(database.sessions) as uow:
        call = uow.session.scalars(select(Call).where(Call.retell_call_id == "call_1")).one()
    assert (call.appointment_made, call.session_outcome, call.appointment_link_status) == (
        True,
        "appointment_booked",
        "linked",
    )
    assert call.appointment_linked_at is not None
    assert call.booking_failed is False


async def test_write_and_read_back_share_one_pooled_connection(
    sql_backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """A booking takes two pooled connections: the look-up's, one to write and read back.

    On PostgreSQL both come from the async engine's pool and the sync engine's is not touched.
    """
    database = _database(sql_backend)
    async with rig(sql_backend, calcom_standin) as r:
        store = r.service.store
        assert isinstance(store, SqlBookingStore)
        with UnitOfWork(database.sessions) as uow:
            uow.session.add(Call(retell_call_id="call_1", direction="inbound"))
            uow.commit()
        await r.service.book(_request("call_warm_up", SLOT + timedelta(days=1)))
        checkouts: dict[int, int] = {}
        listeners = []
        for number, engine in enumerate(store.engines):

            def checked_out(*args: object, number: int = number) -> None:
                checkouts[number] = checkouts.get(number, 0) + 1

            event.listen(engine, "checkout", checked_out)
            listeners.append((engine, checked_out))
        try:
            outcome = await r.service.book(_request())
        finally:
            for engine, listener in listeners:
                event.remove(engine, "checkout", listener)
    assert outcome.result is BookingResult.BOOKED
    if database.dialect == "postgresql":
        assert checkouts == {1: 2}
    else:
        assert checkouts == {0: 2}


async def test_same_request_three_times_books_once(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Retell's retries of one function call return the same appointment and book once."""
    async with rig(backend, calcom_standin) as r:
        outcomes = [await r.service.book(_request()) for _ in range(3)]
    assert [o.result for o in outcomes] == [
        BookingResult.BOOKED,
        BookingResult.ALREADY_BOOKED,
        BookingResult.ALREADY_BOOKED,
    ]
    assert len({o.appointment_id for o in outcomes}) == 1
    assert all(o.booked for o in outcomes)
    assert calcom_standin.request_count("create") == 1
    assert len(r.appointments()) == 1


async def test_concurrent_duplicates_book_once(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Overlapping retries of one call (the first still in flight) still book once."""
    calcom_standin.delay_next("create", seconds=0.2)
    async with rig(backend, calcom_standin) as r:
        outcomes = await asyncio.gather(*(r.service.book(_request()) for _ in range(3)))
    assert sorted(o.result.value for o in outcomes) == [
        "already_booked",
        "already_booked",
        "booked",
    ]
    assert calcom_standin.request_count("create") == 1


async def test_server_errors_exhaust_retries(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Three 500s: not booked, the call consistent and flagged, a review item, no booking.

    A 500 may have booked: the key's claim stays, for a later request to resolve by the key.
    """
    calcom_standin.fail_next("create", status=500, times=3)
    async with rig(backend, calcom_standin) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.CALCOM_UNAVAILABLE
    assert not outcome.booked
    assert calcom_standin.request_count("create") == 3
    assert r.breaker.keys == ["appointment_booking:event_type:42"] * 3
    assert calcom_standin.bookings() == []
    assert [(a.status, a.idempotency_key) for a in r.appointments()] == [
        ("pending_creation", _request().key)
    ]
    call = r.call()
    assert call.appointment_made is False
    assert call.session_outcome == "creation_failed"
    assert call.booking_failed is True
    assert call.requires_manual_processing is True
    assert r.review_reasons() == ["booking_failed"]


async def test_lost_response_books_exactly_once(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Booked but the answer was lost: the retry finds the booking instead of creating another."""
    calcom_standin.lose_response_next("create")
    async with rig(backend, calcom_standin) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert len(calcom_standin.bookings()) == 1
    assert calcom_standin.request_count("create") == 1
    assert calcom_standin.request_count("list") >= 1
    assert outcome.calcom_booking_uid == calcom_standin.bookings()[0]["uid"]


async def test_timed_out_create_that_booked_is_found(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """A create that books but answers past the read timeout is found, not repeated."""
    calcom_standin.lose_response_next("create", hang_seconds=2.0)
    async with rig(backend, calcom_standin, read_timeout=0.3) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert len(calcom_standin.bookings()) == 1
    assert calcom_standin.request_count("create") == 1


async def test_hang_without_booking_is_retried(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """A create that hung without booking is looked up, then created again: one booking."""
    calcom_standin.hang_next("create", seconds=2.0)
    async with rig(backend, calcom_standin, read_timeout=0.3) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert len(calcom_standin.bookings()) == 1
    assert calcom_standin.request_count("create") == 2


async def test_open_circuit_sends_nothing(backend: Backend, calcom_standin: CalcomStandin) -> None:
    """An open circuit answers not booked at once, with no request to Cal.com, filed for review."""
    async with rig(backend, calcom_standin) as r:
        r.breaker.open = True
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.CIRCUIT_OPEN
    assert outcome.retry_after == 30.0
    assert calcom_standin.requests == []
    assert r.review_reasons() == ["booking_failed"]
    assert r.call().appointment_made is False


async def test_taken_slot_is_not_retried(backend: Backend, calcom_standin: CalcomStandin) -> None:
    """A slot Cal.com says is taken is answered at once, without retries."""
    calcom_standin.add_booking(start=SLOT, event_type_id=42)
    async with rig(backend, calcom_standin) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.SLOT_UNAVAILABLE
    assert calcom_standin.request_count("create") == 1
    assert r.appointments() == []


async def test_rate_limit_waits_for_reset(backend: Backend, calcom_standin: CalcomStandin) -> None:
    """A 429 is retried after the reset the headers announce."""
    calcom_standin.rate_limit_next("create", reset_seconds=4)
    async with rig(backend, calcom_standin) as r:
        outcome = await r.service.book(_request())
    assert outcome.booked
    assert r.retrier.waits == [4.0]
    assert len(calcom_standin.bookings()) == 1


async def test_failed_validation_rolls_back_and_cancels(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """A booking that fails validation is rolled back, cancelled on Cal.com and locally."""
    async with rig(
        backend, calcom_standin, validation_clock=lambda: NOW + timedelta(minutes=10)
    ) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.VALIDATION_FAILED
    assert outcome.details["reason"] == "appointment_too_old"
    (booking,) = calcom_standin.bookings()
    assert booking["status"] == "cancelled"
    (appointment,) = r.appointments()
    assert appointment.status == "cancelled"
    call = r.call()
    assert (call.appointment_made, call.session_outcome) == (False, "creation_failed")
    assert r.alert_types() == ["appointment_validation_failed"]
    assert r.review_reasons() == ["appointment_validation_failed"]


async def test_failed_local_write_cancels_calcom_booking(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Cal.com booked but our write failed: the Cal.com booking is cancelled (compensation).

    The database refused every write to the claim, so it stays open, booking-less: a later
    request finds the cancelled booking by its key once the claim is stale.
    """
    with backend.failing_claim_writes():
        async with rig(backend, calcom_standin) as r:
            outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.LOCAL_WRITE_FAILED
    (booking,) = calcom_standin.bookings()
    assert booking["status"] == "cancelled"
    assert [(a.status, a.calcom_booking_uid) for a in r.appointments()] == [
        ("pending_creation", None)
    ]
    assert r.call().appointment_made is False
    assert r.call().booking_failed is True
    assert r.review_reasons() == ["booking_failed"]


async def test_a_write_that_committed_although_it_raised_is_kept(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The connection is cut as the write commits: the write raised, yet the row is stored,
    and a concurrent retry may already have been told "booked" from it. The service reads
    the key's row again, finds the booking stored and validates it: nothing is cancelled."""
    cut: list[str] = []

    def cut_after_the_write(name: str) -> None:
        if name == "write_and_link" and not cut:
            cut.append(name)
            raise OperationalError("UPDATE appointments", {}, ConnectionError("connection lost"))

    store = watched(backend.store, cut_after_the_write)
    async with rig(backend, calcom_standin, store=store) as r:
        outcome = await r.service.book(_request())
    assert cut == ["write_and_link"]
    assert outcome.result is BookingResult.BOOKED
    (booking,) = calcom_standin.bookings()
    assert booking["status"] == "accepted"
    (appointment,) = r.appointments()
    assert (appointment.status, appointment.calcom_booking_uid) == ("booked", booking["uid"])
    assert outcome.appointment_id == appointment.id
    assert r.call().appointment_made is True
    assert r.review_reasons() == []


class _LostWrite:
    """The backend's store, except that the booking's write is lost (it raises, and
    nothing is stored); ``after_read(uid)`` runs once, right after the service has read
    the key's row to learn whether the write was stored anyway."""

    def __init__(
        self, store: BookingStore, *, after_read: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._after_read = after_read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        raise OperationalError("UPDATE appointments", {}, ConnectionError("connection lost"))

    async def claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        stored = await self._store.claim_stored(key, uid)
        after_read, self._after_read = self._after_read, None
        if after_read is not None:
            after_read(uid)
        return stored


async def test_a_claim_the_webhook_filled_after_a_lost_write_is_kept(
    sql_backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The write is lost and the key's row holds no booking when read; then the webhook
    fills the claim. The claim is closed before the booking is cancelled, and the close
    finds it filled: the booking is validated and kept, not cancelled under a row that
    says "booked" (a retry would be told so, with nothing at Cal.com)."""
    database = _database(sql_backend)
    delivered: list[str] = []

    def webhook_fills_the_claim(uid: str) -> None:
        webhook = CalcomWebhook.model_validate_json(
            calcom_standin.webhook_body("BOOKING_CREATED", uid)
        )
        with UnitOfWork(database.sessions) as uow:
            apply_calcom_event(uow.session, webhook, now=NOW)
            uow.commit()
        delivered.append(uid)

    store = _LostWrite(sql_backend.store, after_read=webhook_fills_the_claim)
    async with rig(sql_backend, calcom_standin, store=cast(BookingStore, store)) as r:
        outcome = await r.service.book(_request())
    (booking,) = calcom_standin.bookings()
    assert delivered == [booking["uid"]]
    assert outcome.result is BookingResult.BOOKED
    assert booking["status"] == "accepted"
    (appointment,) = r.appointments()
    assert (appointment.status, appointment.calcom_booking_uid) == ("booked", booking["uid"])
    assert r.call().appointment_made is True
    assert r.review_reasons() == []


async def test_a_lost_write_closes_the_claim_before_the_booking_is_cancelled(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The write is lost and the key's row holds no booking: by the time Cal.com is asked
    to cancel, the claim is cancelled, so nothing can fill it with the booking after."""
    claims_at_cancel: list[list[str]] = []
    store = cast(BookingStore, _LostWrite(backend.store))
    async with rig(backend, calcom_standin, store=store) as r:
        cancel = r.client.cancel_booking

        async def cancel_seeing_the_claim(uid: str, *, reason: str) -> CalcomBooking:
            claims_at_cancel.append([a.status for a in r.appointments()])
            return await cancel(uid, reason=reason)

        r.client.cancel_booking = cancel_seeing_the_claim  # type: ignore[method-assign]
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.LOCAL_WRITE_FAILED
    assert claims_at_cancel == [["cancelled"]]
    assert [b["status"] for b in calcom_standin.bookings()] == ["cancelled"]
    assert [a.status for a in r.appointments()] == ["cancelled"]
    assert r.call().appointment_made is False
    assert r.call().booking_failed is True
    assert r.review_reasons() == ["booking_failed"]


async def test_failed_compensation_alerts_and_files(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """If the cancellation fails too: a compensation_failed alert and a review item."""
    calcom_standin.fail_next("cancel", status=503, times=3)
    with backend.failing_claim_writes():
        async with rig(backend, calcom_standin) as r:
            outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.LOCAL_WRITE_FAILED
    assert calcom_standin.bookings()[0]["status"] == "accepted"
    assert r.alert_types() == ["compensation_failed"]
    assert r.review_reasons() == ["compensation_failed"]


class _BrokenBreaker(FakeBreaker):
    async def call(self, circuit_key: str, fn: Callable[[], Awaitable[T]], /) -> T:
        raise RuntimeError("breaker store exploded")


async def test_unexpected_error_is_filed_not_raised(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """An error nobody foresaw ends as not booked, with the call filed for review."""
    async with rig(backend, calcom_standin, breaker=_BrokenBreaker()) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.INTERNAL_ERROR
    assert not outcome.booked
    assert r.review_reasons() == ["booking_failed"]
    assert r.call().booking_failure_reason == "internal_error"


async def test_webhook_storing_the_booking_first_is_no_conflict(
    sql_backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """Cal.com's BOOKING_CREATED stored before our own write: the booking still succeeds once."""
    database = _database(sql_backend)
    async with rig(sql_backend, calcom_standin) as r:
        client = r.client
        create = client.create_booking

        async def create_then_webhook(new: NewBooking) -> CalcomBooking:
            booking = await create(new)
            webhook = CalcomWebhook.model_validate_json(
                calcom_standin.webhook_body("BOOKING_CREATED", booking.uid)
            )
            with UnitOfWork(database.sessions) as uow:
                apply_calcom_event(uow.session, webhook, now=NOW)
                uow.commit()
            return booking

        client.create_booking = create_then_webhook  # type: ignore[method-assign]
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    (appointment,) = r.appointments()
    assert appointment.id == outcome.appointment_id
    assert appointment.idempotency_key == _request().key
    assert r.call().appointment_made is True


class _DroppedReadBack:
    """The backend's store, except that the write's own read-back finds its connection
    dropped (as ``pg_terminate_backend`` right after the commit leaves it); with
    ``fresh_reads_too``, every read-back after it too (the database went)."""

    def __init__(self, store: BookingStore, *, fresh_reads_too: bool = False) -> None:
        self._store = store
        self._fresh_reads_too = fresh_reads_too

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        async def dropped(appointment_id: int, read: ReadBack) -> T:
            async def broken() -> AppointmentReadBack | None:
                raise OperationalError("SELECT", {}, ConnectionError("server closed"))

            return await check(appointment_id, broken)

        return await self._store.write_and_link(appointment, dropped)

    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        if self._fresh_reads_too:
            raise OperationalError("SELECT", {}, ConnectionError("connection refused"))
        return await self._store.read_back(call_id, appointment_id)


async def test_a_dropped_read_back_is_read_again_not_cancelled(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The booking is stored, then the read-back's connection drops: it is read again on a
    fresh one and passes. A stored booking is not cancelled for a lost connection (a
    Retell retry may already have been told it is booked)."""
    store = cast(BookingStore, _DroppedReadBack(backend.store))
    async with rig(backend, calcom_standin, store=store) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.BOOKED
    assert [b["status"] for b in calcom_standin.bookings()] == ["accepted"]
    assert [a.status for a in r.appointments()] == ["booked"]
    assert r.review_reasons() == []


async def test_a_read_back_that_cannot_run_keeps_the_stored_booking(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """The write committed, then the database went: validation cannot read anything back.
    Nothing was found wrong, so nothing is rolled back or cancelled: the booking stays
    stored and live at Cal.com, and the caller hears "we'll call you back", written down."""
    store = cast(BookingStore, _DroppedReadBack(backend.store, fresh_reads_too=True))
    async with rig(backend, calcom_standin, store=store) as r:
        outcome = await r.service.book(_request())
    assert outcome.result is BookingResult.VALIDATION_FAILED
    assert outcome.details["reason"] == "validation_error"
    (booking,) = calcom_standin.bookings()
    assert booking["status"] == "accepted"
    (appointment,) = r.appointments()
    assert (appointment.status, appointment.calcom_booking_uid) == ("booked", booking["uid"])
    call = r.call()
    assert (call.appointment_made, call.appointment_link_status) == (True, "linked")
    assert (call.booking_failed, call.booking_failure_reason) == (True, "validation_error")
    assert r.review_reasons() == ["booking_failed"]
    assert r.alert_types() == []
