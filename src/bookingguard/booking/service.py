"""``BookingService.book``: DESIGN.md's booking path, steps 1 to 6.

1. Idempotency: a request whose key (Retell call id + event type + slot, or given)
   already has an appointment returns it; nothing is sent to Cal.com.
2. The Cal.com create runs under the circuit ``appointment_booking:event_type:{id}``,
   retried on transient failures. A failure with an unknown outcome (timeout, lost
   response, 5xx) is followed, before the next create, by a look-up of the booking
   by the idempotency key we put in its metadata: a lost response never books twice.
3. The appointment and the call's flags are written in one transaction.
4. Post-booking validation reads back what was committed.
5. A failed validation rolls the call's flags back (alert, review item, outbox).
6. A Cal.com booking we could not keep is cancelled (retried); if that fails too,
   a critical alert and a review item say so.

Database work runs in worker threads (sync sessions), never blocking the event loop;
on PostgreSQL the look-up, the write and the read-back, which every booking waits
on, run on psycopg's async connections instead (``AsyncPostgres``).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.ports import Breaker, CalcomBookings, Retrier
from bookingguard.booking.rollback import (
    record_booking_failure,
    record_compensation_failure,
    rollback_on_failure,
)
from bookingguard.booking.validation import PostBookingValidator, ValidationResult
from bookingguard.calcom import (
    CalcomBooking,
    CalcomConnectionError,
    CalcomError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    NewBooking,
    format_utc,
)
from bookingguard.db.async_pg import AsyncPostgres
from bookingguard.db.engine import outside_transaction
from bookingguard.db.models import Appointment, Call
from bookingguard.db.uow import UnitOfWork
from bookingguard.resilience import CircuitOpenError

__all__ = [
    "IDEMPOTENCY_METADATA_KEY",
    "RETELL_CALL_METADATA_KEY",
    "BookingOutcome",
    "BookingRequest",
    "BookingResult",
    "BookingService",
    "circuit_key_for",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Cal.com booking metadata keys: our idempotency key and the Retell call id.
IDEMPOTENCY_METADATA_KEY = "bookingguard_idempotency_key"
RETELL_CALL_METADATA_KEY = "retell_call_id"
#: How far after the slot's start the look-up by idempotency key searches for its end.
_LOOKUP_SPAN = timedelta(days=1)


# Hot-path statements, built once with bound parameters (building an expression costs
# more than running it on a busy host).
_PREPARE = (
    select(
        Call.id,
        Appointment.id,
        Appointment.call_id,
        Appointment.starts_at,
        Appointment.status,
        Appointment.calcom_booking_uid,
    )
    .select_from(Call)
    .outerjoin(Appointment, Appointment.idempotency_key == bindparam("key"))
    .where(Call.retell_call_id == bindparam("retell_call_id"))
)
# The appointment's values bind as ``new_<column>``: a parameter named like a column would
# also be SET by the UPDATE below, which SQLAlchemy fills from matching parameter names.
_NEW_APPOINTMENT_COLUMNS = (
    "call_id",
    "event_type_id",
    "calcom_v2_booking_id",
    "calcom_booking_uid",
    "starts_at",
    "ends_at",
    "status",
    "idempotency_key",
    "created_at",
    "updated_at",
)
_INSERT_APPOINTMENT = (
    insert(Appointment)
    .values({name: bindparam(f"new_{name}") for name in _NEW_APPOINTMENT_COLUMNS})
    .returning(Appointment.id)
)
_LINK_CALL = (
    update(Call)
    .where(
        Call.id == bindparam("linked_call_id"),
        or_(
            Call.appointment_made.is_not(True),
            Call.session_outcome.is_distinct_from("appointment_booked"),
            Call.appointment_link_status.is_distinct_from("linked"),
            Call.booking_failed.is_(True),
        ),
    )
    .values(
        appointment_made=True,
        session_outcome="appointment_booked",
        appointment_link_status="linked",
        appointment_linked_at=bindparam("now"),
        booking_failed=False,
        booking_failure_reason=None,
        updated_at=bindparam("now"),
    )
)
# PostgreSQL: both writes as one statement (the link a data-modifying CTE), which runs
# in autocommit as its own transaction: one round trip instead of BEGIN, INSERT, UPDATE
# and COMMIT.
_INSERT_AND_LINK = _INSERT_APPOINTMENT.add_cte(_LINK_CALL.returning(Call.id).cte("linked_call"))


def circuit_key_for(event_type_id: int) -> str:
    """The breaker circuit guarding bookings of one Cal.com event type."""
    return f"appointment_booking:event_type:{event_type_id}"


@dataclass(frozen=True, kw_only=True)
class BookingRequest:
    """One booking asked for by the agent during a call."""

    retell_call_id: str
    start: datetime
    event_type_id: int
    name: str
    time_zone: str
    email: str | None = None
    phone: str | None = None
    language: str = "en"
    idempotency_key: str | None = None

    @property
    def key(self) -> str:
        """The given key, else one derived from the call, the event type and the slot."""
        if self.idempotency_key:
            return self.idempotency_key
        text = f"{self.retell_call_id}|{self.event_type_id}|{format_utc(self.start)}"
        return "bg1-" + hashlib.sha256(text.encode()).hexdigest()[:40]


class BookingResult(enum.StrEnum):
    """How a booking request ended; the HTTP layer turns it into a sentence for the caller."""

    BOOKED = "booked"
    ALREADY_BOOKED = "already_booked"
    SLOT_UNAVAILABLE = "slot_unavailable"
    CIRCUIT_OPEN = "circuit_open"
    CALCOM_UNAVAILABLE = "calcom_unavailable"
    CALCOM_REJECTED = "calcom_rejected"
    VALIDATION_FAILED = "validation_failed"
    LOCAL_WRITE_FAILED = "local_write_failed"
    PREVIOUSLY_FAILED = "previously_failed"
    INTERNAL_ERROR = "internal_error"


_BOOKED_RESULTS = frozenset({BookingResult.BOOKED, BookingResult.ALREADY_BOOKED})


@dataclass(frozen=True)
class BookingOutcome:
    """The answer to one booking request."""

    result: BookingResult
    call_id: int | None = None
    appointment_id: int | None = None
    start: datetime | None = None
    calcom_booking_uid: str | None = None
    retry_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def booked(self) -> bool:
        return self.result in _BOOKED_RESULTS


@dataclass(frozen=True)
class _Stored:
    appointment_id: int
    call_id: int | None
    start: datetime | None
    status: str
    calcom_booking_uid: str | None


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def _prepared(row: Sequence[Any]) -> tuple[int, _Stored | None]:
    """``_PREPARE``'s row as the call's id and the appointment already stored for the key."""
    start = row[3].astimezone(UTC) if row[3] is not None else None
    stored = _Stored(row[1], row[2], start, row[4], row[5]) if row[1] is not None else None
    return row[0], stored


def _write_params(
    call_id: int, booking: CalcomBooking, key: str, now: datetime
) -> dict[str, object]:
    """The parameters of step 3's statements: the appointment's, the call's, the time."""
    return {
        "new_call_id": call_id,
        "new_event_type_id": booking.event_type_id,
        "new_calcom_v2_booking_id": booking.id,
        "new_calcom_booking_uid": booking.uid,
        "new_starts_at": booking.start.astimezone(UTC),
        "new_ends_at": booking.end.astimezone(UTC),
        "new_status": "booked",
        "new_idempotency_key": key,
        "new_created_at": now,
        "new_updated_at": now,
        "linked_call_id": call_id,
        "now": now,
    }


def _validation_error(call_id: int, appointment_id: int, exc: SQLAlchemyError) -> ValidationResult:
    """A validation that cannot read the database fails rather than passes."""
    log.error("post-booking validation of call %s failed to run", call_id, exc_info=exc)
    return ValidationResult(
        False,
        "validation_error",
        {"call_id": call_id, "appointment_id": appointment_id, "error": str(exc)},
    )


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether the failed create may have booked anyway."""
    if isinstance(exc, CalcomError):
        return exc.outcome_unknown
    return isinstance(exc, TimeoutError)


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: timeouts, connection errors, 5xx, 429, garbled answers."""
    return isinstance(
        exc,
        CalcomServerError
        | CalcomRateLimitedError
        | CalcomTimeoutError
        | CalcomConnectionError
        | CalcomProtocolError
        | TimeoutError
        | OSError,
    )


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, CalcomRateLimitedError) else None


def _is_circuit_open(exc: BaseException) -> bool:
    return isinstance(exc, CircuitOpenError)


class BookingService:
    """Books appointments through Cal.com so that the call row never lies."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        calcom: CalcomBookings,
        breaker: Breaker,
        retrier: Retrier,
        validator: PostBookingValidator,
        clock: Callable[[], datetime],
        metrics: BookingMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        # The engine the sessions are bound to, for work that holds one connection throughout.
        self._engine: Engine = sessions.kw["bind"]
        self._postgres = AsyncPostgres.for_engine(self._engine)
        self._calcom = calcom
        self._breaker = breaker
        self._retrier = retrier
        self._validator = validator
        self._clock = clock
        self._metrics = metrics
        self._locks: dict[str, _KeyLock] = {}

    @property
    def postgres(self) -> AsyncPostgres | None:
        """The async connections the hot path uses on PostgreSQL (None on SQLite)."""
        return self._postgres

    async def aclose(self) -> None:
        """Close the async connections (PostgreSQL); the engine is its owner's to dispose."""
        if self._postgres is not None:
            await self._postgres.aclose()

    async def book(self, request: BookingRequest) -> BookingOutcome:
        """Book ``request`` once, however often it is asked; never leaves a phantom booking."""
        if request.start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        async with self._exclusive(request.key):
            try:
                outcome = await self._book(request)
            except Exception as exc:
                log.exception("booking for call %s failed unexpectedly", request.retell_call_id)
                outcome = await self._unexpected(request, exc)
        if self._metrics is not None:
            self._metrics.bookings.labels(result=outcome.result.value).inc()
        return outcome

    async def _unexpected(self, request: BookingRequest, exc: Exception) -> BookingOutcome:
        """A bug or an outage we did not foresee: file the call for review if we still can."""
        details = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        call_id: int | None = None
        try:
            call_id, _ = await self._in_thread(self._prepare, request.retell_call_id, request.key)
            await self._in_thread(
                self._write_failure,
                call_id,
                BookingResult.INTERNAL_ERROR.value,
                details,
                self._clock(),
            )
        except Exception:
            log.exception("could not file call %s for review", request.retell_call_id)
        return BookingOutcome(BookingResult.INTERNAL_ERROR, call_id=call_id, details=details)

    @asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """One request per idempotency key at a time in this process (Retell retries overlap)."""
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def _book(self, request: BookingRequest) -> BookingOutcome:
        key = request.key
        call_id, stored = await self._look_up(request.retell_call_id, key)
        if stored is not None:
            result = (
                BookingResult.PREVIOUSLY_FAILED
                if stored.status == "cancelled"
                else BookingResult.ALREADY_BOOKED
            )
            return BookingOutcome(
                result,
                call_id=call_id,
                appointment_id=stored.appointment_id,
                start=stored.start,
                calcom_booking_uid=stored.calcom_booking_uid,
            )
        new = NewBooking(
            start=request.start,
            event_type_id=request.event_type_id,
            name=request.name,
            time_zone=request.time_zone,
            email=request.email,
            phone_number=request.phone,
            language=request.language,
            metadata={
                IDEMPOTENCY_METADATA_KEY: key,
                RETELL_CALL_METADATA_KEY: request.retell_call_id,
            },
        )
        booking_or_failure = await self._create_on_calcom(new, key, call_id)
        if isinstance(booking_or_failure, BookingOutcome):
            return booking_or_failure
        return await self._record(booking_or_failure, call_id=call_id, key=key)

    # -- step 2: Cal.com, guarded ----------------------------------------------

    async def _create_on_calcom(
        self, new: NewBooking, key: str, call_id: int
    ) -> CalcomBooking | BookingOutcome:
        circuit = circuit_key_for(new.event_type_id)
        attempts = 0
        unknown = False

        # Coroutine functions, not lambdas: the breaker awaits them on the event loop,
        # where a plain callable would first be run in a worker thread.
        async def create() -> CalcomBooking:
            return await self._calcom.create_booking(new)

        async def attempt() -> CalcomBooking:
            nonlocal attempts, unknown
            if unknown:
                found = await self._find_on_calcom(new, key)
                if found is not None:
                    return found
            attempts += 1
            try:
                return await self._breaker.call(circuit, create)
            except BaseException as exc:
                unknown = unknown or _outcome_unknown(exc)
                raise

        try:
            return await self._retrier(
                attempt, is_retryable=_is_transient, retry_after=_retry_after
            )
        except CalcomSlotUnavailableError as exc:
            return BookingOutcome(
                BookingResult.SLOT_UNAVAILABLE, call_id=call_id, details={"error": exc.message}
            )
        except Exception as exc:
            if unknown and not _is_circuit_open(exc):
                found = await self._last_look(new, key)
                if found is not None:
                    return found
            return await self._refused(exc, call_id=call_id, attempts=attempts, unknown=unknown)

    async def _find_on_calcom(self, new: NewBooking, key: str) -> CalcomBooking | None:
        """The live Cal.com booking carrying our idempotency key, if the lost create made one.

        Look-ups bypass the booking circuit: their successes must not reset the count
        of failed creates (three 500s in a row still open it), and they are bounded by
        the retry's attempts and the client's timeouts.
        """
        async for booking in self._calcom.iter_bookings(
            after_start=new.start - timedelta(minutes=1),
            before_end=new.start + _LOOKUP_SPAN,
            event_type_id=new.event_type_id,
        ):
            if booking.metadata.get(IDEMPOTENCY_METADATA_KEY) == key and not booking.is_cancelled:
                return booking
        return None

    async def _last_look(self, new: NewBooking, key: str) -> CalcomBooking | None:
        """After the retries ran out with an unknown outcome: did one of them book after all?"""
        try:
            return await self._find_on_calcom(new, key)
        except Exception:
            log.warning("look-up of booking %s after failed creates failed", key, exc_info=True)
            return None

    async def _refused(
        self, exc: Exception, *, call_id: int, attempts: int, unknown: bool
    ) -> BookingOutcome:
        if _is_circuit_open(exc):
            result = BookingResult.CIRCUIT_OPEN
        elif _is_transient(exc):
            result = BookingResult.CALCOM_UNAVAILABLE
        elif isinstance(exc, CalcomError):
            result = BookingResult.CALCOM_REJECTED
        else:
            raise exc
        retry_after = getattr(exc, "retry_after", None)
        details: dict[str, Any] = {
            "error": str(exc),
            "error_code": getattr(exc, "code", type(exc).__name__),
            "attempts": attempts,
            "outcome_unknown": unknown,
        }
        now = self._clock()
        await self._in_thread(self._write_failure, call_id, result.value, details, now)
        return BookingOutcome(
            result,
            call_id=call_id,
            retry_after=retry_after if isinstance(retry_after, float | int) else None,
            details=details,
        )

    # -- steps 3 to 6: record, validate, roll back, compensate ---------------------

    async def _record(self, booking: CalcomBooking, *, call_id: int, key: str) -> BookingOutcome:
        now = self._clock()
        try:
            if self._postgres is not None:
                appointment_id, result = await self._write_and_validate_async(
                    self._postgres, call_id, booking, key, now
                )
            else:
                appointment_id, result = await self._in_thread(
                    self._write_and_validate, call_id, booking, key, now
                )
        except IntegrityError:
            return await self._resolve_conflict(booking, call_id=call_id, key=key)
        except SQLAlchemyError as exc:
            log.error("local write of Cal.com booking %s failed", booking.uid, exc_info=True)
            return await self._write_failed(booking, call_id=call_id, error=str(exc))
        return await self._conclude(
            booking, call_id=call_id, appointment_id=appointment_id, result=result
        )

    async def _resolve_conflict(
        self, booking: CalcomBooking, *, call_id: int, key: str
    ) -> BookingOutcome:
        """Another writer stored this key or this Cal.com booking first (a retry, a webhook)."""
        stored = await self._in_thread(self._find_stored, key, booking.uid)
        if stored is None:
            return await self._write_failed(booking, call_id=call_id, error="conflicting write")
        if stored.calcom_booking_uid == booking.uid:
            result = await self._in_thread(self._run_validation, call_id, stored.appointment_id)
            return await self._conclude(
                booking, call_id=call_id, appointment_id=stored.appointment_id, result=result
            )
        await self._compensate(booking, call_id=call_id)
        return BookingOutcome(
            BookingResult.ALREADY_BOOKED,
            call_id=call_id,
            appointment_id=stored.appointment_id,
            start=stored.start,
            calcom_booking_uid=stored.calcom_booking_uid,
        )

    async def _write_failed(
        self, booking: CalcomBooking, *, call_id: int, error: str
    ) -> BookingOutcome:
        """Step 6: Cal.com booked, we could not record it: cancel it and file the call."""
        details = {"error": error.splitlines()[0], "calcom_booking_uid": booking.uid}
        if await self._compensate(booking, call_id=call_id):
            try:
                await self._in_thread(
                    self._write_failure,
                    call_id,
                    BookingResult.LOCAL_WRITE_FAILED.value,
                    details,
                    self._clock(),
                )
            except SQLAlchemyError:
                log.error("could not file call %s for review", call_id, exc_info=True)
        return BookingOutcome(
            BookingResult.LOCAL_WRITE_FAILED,
            call_id=call_id,
            calcom_booking_uid=booking.uid,
            details=details,
        )

    async def _conclude(
        self,
        booking: CalcomBooking,
        *,
        call_id: int,
        appointment_id: int,
        result: ValidationResult,
    ) -> BookingOutcome:
        """Steps 4 and 5: a validated booking is booked; otherwise roll back and compensate."""
        if result.success:
            return BookingOutcome(
                BookingResult.BOOKED,
                call_id=call_id,
                appointment_id=appointment_id,
                start=booking.start,
                calcom_booking_uid=booking.uid,
                details=result.details,
            )
        reason = result.reason or "validation_failed"
        try:
            await self._in_thread(self._rollback, call_id, reason, result.details)
        except RollbackFailedError:
            log.critical("rollback of call %s failed", call_id, exc_info=True)
        if await self._compensate(booking, call_id=call_id):
            await self._in_thread(self._cancel_local, appointment_id)
        return BookingOutcome(
            BookingResult.VALIDATION_FAILED,
            call_id=call_id,
            appointment_id=appointment_id,
            calcom_booking_uid=booking.uid,
            details={"reason": reason, **result.details},
        )

    async def _compensate(self, booking: CalcomBooking, *, call_id: int) -> bool:
        """Cancel a Cal.com booking we could not keep; on failure, alert and file for review."""
        circuit = circuit_key_for(booking.event_type_id or 0)

        async def cancel_on_calcom() -> CalcomBooking:
            return await self._calcom.cancel_booking(
                booking.uid, reason="Booking could not be recorded; cancelled automatically"
            )

        async def cancel() -> CalcomBooking:
            return await self._breaker.call(circuit, cancel_on_calcom)

        try:
            await self._retrier(cancel, is_retryable=_is_transient, retry_after=_retry_after)
        except Exception as exc:
            if await self._already_cancelled(booking.uid):
                return self._compensated("done")
            log.error("compensation of Cal.com booking %s failed", booking.uid, exc_info=True)
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            try:
                await self._in_thread(
                    self._write_compensation_failure, call_id, booking.uid, error, self._clock()
                )
            except SQLAlchemyError:
                log.critical(
                    "could not record failed compensation of %s", booking.uid, exc_info=True
                )
            self._compensated("failed")
            return False
        return self._compensated("done")

    def _compensated(self, outcome: str) -> bool:
        if self._metrics is not None:
            self._metrics.compensations.labels(outcome=outcome).inc()
        return outcome == "done"

    async def _already_cancelled(self, uid: str) -> bool:
        """A cancel whose answer was lost, retried, is refused as already cancelled."""
        try:
            current = await self._calcom.get_booking(uid)
        except Exception:
            return False
        return current.is_cancelled

    # -- database work on the event loop (PostgreSQL) -----------------------------

    async def _look_up(self, retell_call_id: str, key: str) -> tuple[int, _Stored | None]:
        """``_prepare``: on an async connection when the call exists (PostgreSQL)."""
        if self._postgres is not None:
            async with self._postgres.connection() as connection:
                row = await self._postgres.first(
                    connection, _PREPARE, {"retell_call_id": retell_call_id, "key": key}
                )
            if row is not None:
                return _prepared(row)
        return await self._in_thread(self._prepare, retell_call_id, key)

    async def _write_and_validate_async(
        self,
        postgres: AsyncPostgres,
        call_id: int,
        booking: CalcomBooking,
        key: str,
        now: datetime,
    ) -> tuple[int, ValidationResult]:
        """Steps 3 and 4 on one async connection: the write (its own transaction), then
        the read-back of what it committed. Two round trips, and no thread hop."""
        async with postgres.connection() as connection:
            row = await postgres.first(
                connection, _INSERT_AND_LINK, _write_params(call_id, booking, key, now)
            )
            if row is None:
                raise RuntimeError("the appointment INSERT returned no id")
            appointment_id = int(row[0])
            try:
                result = await self._validator.validate_async(
                    postgres, connection, call_id=call_id, appointment_id=appointment_id
                )
            except SQLAlchemyError as exc:
                result = _validation_error(call_id, appointment_id, exc)
        return appointment_id, result

    # -- database work (runs in worker threads) ----------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(fn, *args)

    def _prepare(self, retell_call_id: str, key: str) -> tuple[int, _Stored | None]:
        """The call's id (creating the call if no webhook has yet) and any appointment for ``key``.

        One query on the common path: the call joined to the appointment holding the key,
        run outside a transaction (a lone read sees one snapshot either way), which saves
        the BEGIN and ROLLBACK round trips on PostgreSQL.
        """
        params = {"retell_call_id": retell_call_id, "key": key}
        with self._engine.connect() as connection:
            row = outside_transaction(connection).execute(_PREPARE, params).first()
        if row is not None:
            return _prepared(row)
        for _ in range(2):
            with UnitOfWork(self._sessions) as uow:
                row = uow.session.connection().execute(_PREPARE, params).first()
                if row is not None:
                    return _prepared(row)
                call = Call(retell_call_id=retell_call_id, call_status="ongoing")
                uow.session.add(call)
                try:
                    uow.session.flush()
                    uow.commit()
                except IntegrityError:
                    continue
                return call.id, None
        raise RuntimeError(f"call {retell_call_id} neither found nor created")

    def _write(
        self, connection: Connection, call_id: int, booking: CalcomBooking, key: str, now: datetime
    ) -> int:
        """Step 3: the appointment and the call's flags, in one transaction.

        The database links the call on insert. Writing the flags as well keeps the
        booking path correct while triggers are switched off (staged roll-out); the
        condition makes it a no-op, firing no row triggers, when they are on. Core
        statements: the hot path skips the ORM's unit-of-work bookkeeping. (PostgreSQL
        writes both in one statement, ``_INSERT_AND_LINK``, on an async connection.)
        """
        params = _write_params(call_id, booking, key, now)
        with connection.begin():
            appointment_id: int = connection.execute(_INSERT_APPOINTMENT, params).scalar_one()
            connection.execute(_LINK_CALL, params)
        return appointment_id

    def _find_stored(self, key: str, uid: str) -> _Stored | None:
        with UnitOfWork(self._sessions) as uow:
            row = uow.session.execute(
                select(
                    Appointment.id,
                    Appointment.call_id,
                    Appointment.starts_at,
                    Appointment.status,
                    Appointment.calcom_booking_uid,
                    Appointment.idempotency_key,
                ).where(
                    (Appointment.idempotency_key == key) | (Appointment.calcom_booking_uid == uid)
                )
            ).first()
            if row is None:
                return None
            if row.idempotency_key is None:
                # Stored by the Cal.com webhook before us: claim it for this key.
                uow.session.execute(
                    update(Appointment).where(Appointment.id == row.id).values(idempotency_key=key)
                )
                uow.commit()
            return _Stored(row[0], row[1], row[2], row[3], row[4])

    def _write_and_validate(
        self, call_id: int, booking: CalcomBooking, key: str, now: datetime
    ) -> tuple[int, ValidationResult]:
        """Steps 3 and 4 in one worker-thread hop: commit, then read back what was committed.

        Both on one pooled connection, so the read-back costs no second checkout.
        """
        with self._engine.connect() as connection:
            appointment_id = self._write(connection, call_id, booking, key, now)
            return appointment_id, self._run_validation(
                call_id, appointment_id, connection=connection
            )

    def _run_validation(
        self, call_id: int, appointment_id: int, *, connection: Connection | None = None
    ) -> ValidationResult:
        """Step 4; a validation that cannot read the database fails rather than passes."""
        try:
            if connection is not None:
                return self._validator.validate(
                    connection, call_id=call_id, appointment_id=appointment_id
                )
            with self._engine.connect() as own:
                return self._validator.validate(
                    outside_transaction(own), call_id=call_id, appointment_id=appointment_id
                )
        except SQLAlchemyError as exc:
            return _validation_error(call_id, appointment_id, exc)

    def _rollback(self, call_id: int, reason: str, details: dict[str, Any]) -> None:
        rollback_on_failure(
            self._sessions,
            call_id=call_id,
            reason=reason,
            details=details,
            now=self._clock(),
            metrics=self._metrics,
        )

    def _cancel_local(self, appointment_id: int) -> None:
        with UnitOfWork(self._sessions) as uow:
            uow.session.execute(
                update(Appointment)
                .where(Appointment.id == appointment_id)
                .values(status="cancelled", updated_at=self._clock())
            )
            uow.commit()

    def _write_failure(
        self, call_id: int, reason: str, details: dict[str, Any], now: datetime
    ) -> None:
        with UnitOfWork(self._sessions) as uow:
            record_booking_failure(
                uow.session, call_id=call_id, reason=reason, details=details, now=now
            )
            uow.commit()

    def _write_compensation_failure(
        self, call_id: int, uid: str, error: str, now: datetime
    ) -> None:
        with UnitOfWork(self._sessions) as uow:
            record_compensation_failure(
                uow.session, call_id=call_id, calcom_uid=uid, error=error, now=now
            )
            uow.commit()
