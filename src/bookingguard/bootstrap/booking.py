"""The booking path: the breaker, the retry, the spool and the booking service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking import (
    BookingMetrics,
    BookingService,
    Breaker,
    PostBookingValidator,
    Retrier,
    SqlBookingStore,
    default_booking_metrics,
)
from bookingguard.booking.claims import ClaimWaiter
from bookingguard.booking.spool_replay import ReplayResult, SpoolReplayer
from bookingguard.bootstrap.clients import AsyncRedisClient, build_redis
from bookingguard.calcom import CalcomClient
from bookingguard.clock import utc_now
from bookingguard.db.spool import Spool
from bookingguard.db.uow import session_factory
from bookingguard.resilience import CircuitBreaker
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.settings import Settings

T = TypeVar("T")


def build_circuit_breaker(
    settings: Settings,
    engine: Engine,
    *,
    registry: CollectorRegistry | None = None,
    redis_client: AsyncRedisClient | None = None,
) -> CircuitBreaker:
    """The circuit breaker over Redis → SQL (on ``engine``) → memory, audited to ``engine``
    (through this host's spool while the database is down).

    Redis leads when ``redis_client`` (the process's asyncio client) is given.
    """
    return CircuitBreaker.from_settings(
        settings,
        engine=engine,
        redis_client=redis_client,
        registry=registry,
        spool=build_spool(settings),
    )


class PolicyRetrier:
    """``retry_async`` bound to one ``RetryPolicy``: the booking path's ``Retrier``."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> None:
        self.policy = policy
        self.on_retry = on_retry

    async def __call__(
        self,
        fn: Callable[[], Awaitable[T]],
        /,
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
    ) -> T:
        return await retry_async(
            fn,
            policy=self.policy,
            is_retryable=is_retryable,
            retry_after=retry_after,
            on_retry=self.on_retry,
        )


def build_spool(settings: Settings) -> Spool:
    """This host's spool of failure records and breaker transitions the database could not
    take (``spool.path``)."""
    return Spool(settings.spool.path)


@asynccontextmanager
async def circuit_breaker_in_use(
    settings: Settings, engine: Engine
) -> AsyncIterator[CircuitBreaker]:
    """A command's circuit breaker (``build_circuit_breaker``) over Redis clients of its
    own when ``redis_url`` is set; both closed when the block ends."""
    redis_clients = build_redis(settings)
    breaker = build_circuit_breaker(
        settings,
        engine,
        redis_client=redis_clients.asyncio if redis_clients is not None else None,
    )
    try:
        yield breaker
    finally:
        await breaker.aclose()
        if redis_clients is not None:
            await redis_clients.aclose()


async def replay_spool(settings: Settings, engine: Engine) -> ReplayResult:
    """One replay of the spool into ``engine``'s database (``bookingguard check``).

    With ``redis_url`` set, the breaker's Redis outboxes are drained into the history
    first, as ``serve``'s replay does: transitions whose replies no process received.
    """
    store = SqlBookingStore(session_factory(engine))
    try:
        async with circuit_breaker_in_use(settings, engine) as breaker:
            return await SpoolReplayer(
                spool=build_spool(settings), store=store, transitions=breaker.audit
            ).replay()
    finally:
        await store.aclose()


def build_booking_service(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    calcom: CalcomClient,
    breaker: Breaker,
    retrier: Retrier,
    clock: Callable[[], datetime] = utc_now,
    metrics: BookingMetrics | None = None,
    spool: Spool | None = None,
) -> BookingService:
    """The booking path: Cal.com client under the breaker and retry, validator, rollback,
    and failure records spooled (``build_spool``) while the database is down."""
    metrics = metrics if metrics is not None else default_booking_metrics()
    validator = PostBookingValidator(
        max_appointment_age_seconds=settings.validation.max_appointment_age_seconds,
        clock=clock,
        metrics=metrics,
    )
    store = SqlBookingStore(sessions)
    return BookingService(
        store=store,
        calcom=calcom,
        breaker=breaker,
        retrier=retrier,
        validator=validator,
        clock=clock,
        spool=spool if spool is not None else build_spool(settings),
        metrics=metrics,
        claims=ClaimWaiter(store, wait_seconds=settings.validation.claim_wait_seconds),
        claim_stale_seconds=settings.validation.claim_stale_seconds,
    )
