"""Issue 14, finding 2: no callback promised without a record, even with the database gone.

The database is lost mid-booking (PostgreSQL behind a proxy the test cuts; SQLite by
an engine that fails every statement while "down"): the Cal.com booking is cancelled,
the agent's answer is the callback one, and the record waits in the spool; once the
database answers, the replay writes it (the call flagged, one review item), and
replaying again writes nothing more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bookingguard.api.routes.retell_words import SORRY, booking_sentence
from bookingguard.booking import (
    BookingRequest,
    BookingResult,
    BookingService,
    PostBookingValidator,
    SqlBookingStore,
)
from bookingguard.booking.claim_settler import ClaimSettler
from bookingguard.booking.spool_replay import ReplayResult, SpoolReplayer
from bookingguard.booking.store import BookingStore
from bookingguard.calcom import CalcomBooking, CalcomClient
from bookingguard.db.engine import make_engine
from bookingguard.db.models import Call
from bookingguard.db.spool import (
    BOOKING_FAILED,
    CANCEL_UNRECORDED,
    RESCHEDULE_UNRECORDED,
    FailureRecord,
    Spool,
)
from bookingguard.db.uow import UnitOfWork, session_factory
from tests.conftest import TestDatabase
from tests.integration.booking.backends import Backend, make_backend
from tests.support.booking_fakes import FakeBreaker, ImmediateRetrier
from tests.support.calcom_standin import CalcomStandin
from tests.support.tcp_proxy import TcpProxy

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SLOT = datetime(2026, 12, 3, 14, tzinfo=UTC)


@dataclass
class Outage:
    """A database the test can take away and give back, and a direct view of it."""

    database: TestDatabase
    engine: Engine
    proxy: TcpProxy | None = None
    down: list[bool] = field(default_factory=lambda: [False])

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
        self.down[0] = True

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        self.down[0] = False


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(request: pytest.FixtureRequest) -> Iterator[Outage]:
    """PostgreSQL through a proxy the test cuts; SQLite with every statement failing while
    down (its file cannot be taken away from a process running as root)."""
    if request.param == "postgresql":
        database: TestDatabase = request.getfixturevalue("postgres_database")
        url = make_url(database.url)
        with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            engine = make_engine(
                url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            )
            try:
                yield Outage(database, engine, proxy)
            finally:
                engine.dispose()
        return
    database = request.getfixturevalue("sqlite_database")
    engine = make_engine(database.url)
    failing = Outage(database, engine)

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse(*_args: Any) -> None:
        if failing.down[0]:
            raise OperationalError("statement", {}, sqlite3.OperationalError("disk I/O error"))

    try:
        yield failing
    finally:
        engine.dispose()


def _request(retell_call_id: str = "call_1", start: datetime = SLOT) -> BookingRequest:
    return BookingRequest(
        retell_call_id=retell_call_id,
        start=start,
        event_type_id=42,
        name="Ada Lovelace",
        email="ada@example.com",
        time_zone="Europe/Berlin",
    )


@asynccontextmanager
async def _service(
    store: BookingStore,
    spool: Spool,
    calcom: CalcomStandin,
    *,
    cut: Outage | None = None,
    after: str = "create_booking",
) -> AsyncIterator[BookingService]:
    """The booking service over ``store``; with ``cut``, the database goes once Cal.com
    answered the client's ``after`` (by default, once it booked)."""
    async with CalcomClient(
        base_url=calcom.base_url, api_key=calcom.api_key, read_timeout=2.0
    ) as client:
        if cut is not None:
            call_calcom = getattr(client, after)

            async def then_cut(*args: Any, **kwargs: Any) -> CalcomBooking:
                booking: CalcomBooking = await call_calcom(*args, **kwargs)
                cut.cut()
                return booking

            setattr(client, after, then_cut)
        yield BookingService(
            store=store,
            calcom=client,
            breaker=FakeBreaker(),
            retrier=ImmediateRetrier(),
            validator=PostBookingValidator(max_appointment_age_seconds=300, clock=lambda: NOW),
            clock=lambda: NOW,
            spool=spool,
        )


def _call(database: TestDatabase, retell_call_id: str = "call_1") -> Call:
    with UnitOfWork(database.sessions) as uow:
        return uow.session.scalars(select(Call).where(Call.retell_call_id == retell_call_id)).one()


async def test_database_lost_mid_booking_is_spooled_then_replayed_once(
    outage: Outage, calcom_standin: CalcomStandin, tmp_path: Path
) -> None:
    """Cut after Cal.com booked: whether the write was stored is unknown, so the booking is
    kept; callback answer, spooled, replayed once; the claim, settled once stale, records
    the kept booking and links the call."""
    spool = Spool(tmp_path / "spool.db")
    store = SqlBookingStore(session_factory(outage.engine))
    try:
        async with _service(store, spool, calcom_standin, cut=outage) as service:
            outcome = await service.book(_request())
            assert outcome.result is BookingResult.LOCAL_WRITE_FAILED
            assert booking_sentence(outcome, "Europe/Berlin") == SORRY
            (booking,) = calcom_standin.bookings()
            assert booking["status"] == "accepted"
            (record,) = spool.pending()
            assert (record.kind, record.retell_call_id, record.reason) == (
                BOOKING_FAILED,
                "call_1",
                "local_write_failed",
            )
            assert record.details["calcom_booking_uid"] == booking["uid"]
            assert record.details["outcome_unknown"] is True
            assert _call(outage.database).booking_failed is False

            replayer = SpoolReplayer(spool=spool, store=store)
            still_down = await replayer.replay()
            assert (still_down.replayed, still_down.remaining) == (0, 1)
            assert still_down.error is not None

            outage.restore()
            assert await replayer.replay() == ReplayResult(1, 0)
            call = _call(outage.database)
            assert (call.booking_failed, call.booking_failure_reason) == (
                True,
                "local_write_failed",
            )
            assert (call.appointment_made, call.requires_manual_processing) == (False, True)
            backend = Backend(outage.database.dialect, outage.database, tmp_path / "unused.db")
            assert backend.review_items("call_1") == 1

            assert await replayer.replay() == ReplayResult(0, 0)
            assert backend.review_items("call_1") == 1

            settler = ClaimSettler(
                service=service, store=store, clock=lambda: NOW + timedelta(minutes=10)
            )
            assert await settler.settle() == {BookingResult.BOOKED: 1}
        ((status, uid),) = [(a.status, a.calcom_booking_uid) for a in backend.appointments()]
        assert (status, uid) == ("booked", booking["uid"])
        assert _call(outage.database).appointment_made is True
        assert calcom_standin.request_count("create") == 1
    finally:
        await store.aclose()


class _CrashBeforeRemove(Spool):
    """A spool whose first ``remove`` dies: the replay crashed after the database's commit."""

    crashed = False

    def remove(self, record_id: str) -> None:
        if not self.crashed:
            self.crashed = True
            raise KeyboardInterrupt("killed between the commit and the delete")
        super().remove(record_id)


async def test_replay_that_dies_after_the_commit_writes_the_record_once(
    database: TestDatabase, tmp_path: Path
) -> None:
    """A record whose replay died between the database's commit and the spool's delete is
    found written by the next replay: removed, and the call has still one review item."""
    spool = _CrashBeforeRemove(tmp_path / "spool.db")
    spool.append(
        FailureRecord(
            kind=BOOKING_FAILED,
            retell_call_id="call_9",
            call_id=None,
            reason="calcom_unavailable",
            details={"attempts": 3},
            at=NOW,
        )
    )
    store = SqlBookingStore(database.sessions)
    try:
        replayer = SpoolReplayer(spool=spool, store=store)
        with pytest.raises(KeyboardInterrupt):
            await replayer.replay()
        assert spool.backlog() == 1
        assert await replayer.replay() == ReplayResult(1, 0)
    finally:
        await store.aclose()
    assert _call(database, "call_9").booking_failure_reason == "calcom_unavailable"
    assert Backend(database.dialect, database, tmp_path / "unused.db").review_items("call_9") == 1


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param, request)


async def test_a_start_that_overflows_the_key_is_filed_not_raised(
    backend: Backend, calcom_standin: CalcomStandin
) -> None:
    """9999-12-31 in Etc/GMT+12 overflows building the key: answered, and the call filed."""
    start = datetime(9999, 12, 31, 23, 0, tzinfo=ZoneInfo("Etc/GMT+12"))
    async with _service(backend.store, backend.spool, calcom_standin) as service:
        outcome = await service.book(_request(start=start))
    assert outcome.result is BookingResult.INTERNAL_ERROR
    assert outcome.details["error"].startswith("OverflowError")
    assert calcom_standin.request_count("create") == 0
    flags = backend.flags("call_1")
    assert (flags.booking_failed, flags.booking_failure_reason) == (True, "internal_error")
    assert backend.review_reasons() == ["booking_failed"]
    assert backend.spool.backlog() == 0


async def test_an_overflowing_start_with_the_database_down_is_spooled(
    calcom_standin: CalcomStandin, tmp_path: Path
) -> None:
    """The same overflow while the store refuses every record: the record is in the spool."""
    backend = Backend("memory", None, tmp_path / "spool.db")
    assert backend.memory is not None
    backend.memory.fail_records = OperationalError("INSERT", {}, RuntimeError("database down"))
    start = datetime(9999, 12, 31, 23, 0, tzinfo=ZoneInfo("Etc/GMT+12"))
    async with _service(backend.store, backend.spool, calcom_standin) as service:
        outcome = await service.book(_request("call_overflow", start=start))
    assert outcome.result is BookingResult.INTERNAL_ERROR
    assert outcome.call_id is None
    (record,) = backend.spool.pending()
    assert (record.retell_call_id, record.call_id, record.reason) == (
        "call_overflow",
        None,
        "internal_error",
    )
    assert record.details["error"].startswith("OverflowError")


async def test_a_nul_in_the_call_id_is_filed_under_a_storable_id(
    postgres_database: TestDatabase, calcom_standin: CalcomStandin, tmp_path: Path
) -> None:
    """PostgreSQL refuses a NUL in text: the booking fails, and the call is still filed, its
    Retell id with U+FFFD for the NUL (SQLite stores a NUL, so the booking goes through there).
    The HTTP edge refuses such an id before the service (api/bounds.py)."""
    spool = Spool(tmp_path / "spool.db")
    store = SqlBookingStore(postgres_database.sessions)
    try:
        async with _service(store, spool, calcom_standin) as service:
            outcome = await service.book(_request("call\x00nul"))
    finally:
        await store.aclose()
    assert outcome.result is BookingResult.INTERNAL_ERROR
    assert calcom_standin.request_count("create") == 0
    call = _call(postgres_database, "call\ufffdnul")
    assert (call.id, call.booking_failed, call.booking_failure_reason) == (
        outcome.call_id,
        True,
        "internal_error",
    )
    assert spool.backlog() == 0


async def test_a_cancellation_the_database_missed_is_spooled_and_written_later(
    outage: Outage, calcom_standin: CalcomStandin, tmp_path: Path
) -> None:
    """Cal.com cancelled the appointment and the caller hears so, but the database went
    before it could mark it: the cancellation waits in the spool, and the replay marks
    the appointment cancelled and unlinks the call, once."""
    spool = Spool(tmp_path / "spool.db")
    store = SqlBookingStore(session_factory(outage.engine))
    try:
        async with _service(store, spool, calcom_standin) as service:
            booked = await service.book(_request())
        assert booked.result is BookingResult.BOOKED
        async with _service(
            store, spool, calcom_standin, cut=outage, after="cancel_booking"
        ) as service:
            cancelled = await service.changes.cancel("call_1")
        assert cancelled.result is BookingResult.CANCELLED
        (booking,) = calcom_standin.bookings()
        assert booking["status"] == "cancelled"
        (record,) = spool.pending()
        assert (record.kind, record.details["appointment_id"]) == (
            CANCEL_UNRECORDED,
            booked.appointment_id,
        )
        assert _call(outage.database).appointment_made is True

        outage.restore()
        replayer = SpoolReplayer(spool=spool, store=store)
        assert await replayer.replay() == ReplayResult(1, 0)
        call = _call(outage.database)
        assert (call.appointment_made, call.appointment_link_status) == (False, "unlinked")
        assert call.requires_manual_processing is False
        backend = Backend(outage.database.dialect, outage.database, tmp_path / "unused.db")
        assert [a.status for a in backend.appointments()] == ["cancelled"]
        assert backend.review_items("call_1") == 0
        spool.append(record)
        assert await replayer.replay() == ReplayResult(1, 0)
        assert [a.status for a in backend.appointments()] == ["cancelled"]
    finally:
        await store.aclose()


async def test_a_move_the_database_missed_is_spooled_and_written_later(
    outage: Outage, calcom_standin: CalcomStandin, tmp_path: Path
) -> None:
    """Cal.com moved the appointment and the caller hears so, but the database went
    before the move was written: the move waits in the spool, and the replay stores the
    booking moved to as the call's live appointment and the old one as rescheduled, once."""
    spool = Spool(tmp_path / "spool.db")
    store = SqlBookingStore(session_factory(outage.engine))
    moved_to = SLOT + timedelta(days=2)
    try:
        async with _service(store, spool, calcom_standin) as service:
            booked = await service.book(_request())
        assert booked.result is BookingResult.BOOKED
        async with _service(
            store, spool, calcom_standin, cut=outage, after="reschedule_booking"
        ) as service:
            moved = await service.changes.reschedule("call_1", start=moved_to)
        assert (moved.result, moved.start) == (BookingResult.RESCHEDULED, moved_to)
        live = [b for b in calcom_standin.bookings() if b["status"] == "accepted"]
        assert [b["uid"] for b in live] == [moved.calcom_booking_uid]
        (record,) = spool.pending()
        assert (record.kind, record.details["appointment_id"]) == (
            RESCHEDULE_UNRECORDED,
            booked.appointment_id,
        )

        outage.restore()
        replayer = SpoolReplayer(spool=spool, store=store)
        backend = Backend(outage.database.dialect, outage.database, tmp_path / "unused.db")
        written = [
            (booked.calcom_booking_uid, "rescheduled"),
            (moved.calcom_booking_uid, "booked"),
        ]
        assert await replayer.replay() == ReplayResult(1, 0)
        assert [(a.calcom_booking_uid, a.status) for a in backend.appointments()] == written
        spool.append(record)
        assert await replayer.replay() == ReplayResult(1, 0)
        assert [(a.calcom_booking_uid, a.status) for a in backend.appointments()] == written
        call = _call(outage.database)
        assert (call.appointment_made, call.appointment_link_status) == (True, "linked")
        assert call.requires_manual_processing is False
        assert backend.review_items("call_1") == 0
        latest = await store.latest_appointment("call_1")
        assert latest is not None
        assert (latest.calcom_booking_uid, latest.start) == (moved.calcom_booking_uid, moved_to)
    finally:
        await store.aclose()
