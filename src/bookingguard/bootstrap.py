"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
Nothing else in the package builds an engine or a Redis client: the rest take them
as arguments. A process has one engine and, when ``redis_url`` is set, one
``RedisClients``: an asyncio pool for the breaker store and the readiness check,
and a blocking pool for the rate limiter and the job leases. Two, because those
two run outside the event loop (``limits``' synchronous storage in a sync request
dependency, the leases in the scheduler's worker threads) and an asyncio client
belongs to one event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import httpx
import redis
import redis.asyncio as aioredis
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
from bookingguard.booking.calls import CallEventRecorder
from bookingguard.booking.claims import ClaimWaiter
from bookingguard.calcom import CalcomClient
from bookingguard.clock import utc_now
from bookingguard.db.engine import make_engine
from bookingguard.db.uow import session_factory
from bookingguard.resilience import CircuitBreaker
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.settings import Settings

if TYPE_CHECKING:
    from bookingguard.monitoring.locks import JobLock
    from bookingguard.monitoring.reconcile import BookingSource
    from bookingguard.monitoring.service import MonitoringService

__all__ = [
    "PolicyRetrier",
    "RedisClients",
    "Services",
    "build_async_redis",
    "build_blocking_redis",
    "build_booking_service",
    "build_circuit_breaker",
    "build_engine",
    "build_job_lock",
    "build_monitoring",
    "build_redis",
    "build_services",
    "calcom_booking_source",
    "utc_now",
]

T = TypeVar("T")


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)


#: Socket timeouts of the blocking pool: a rate-limit check or a lease waits no longer.
BLOCKING_REDIS_TIMEOUT_SECONDS = 1.0


def build_async_redis(url: str, *, timeout_seconds: float) -> aioredis.Redis:
    """An asyncio client (one pool) whose connect and read timeouts bound every command.

    It retries once at once, so a pooled connection that died with a restarted
    server is replaced instead of failing the call.
    """
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )


def build_blocking_redis(
    url: str, *, timeout_seconds: float = BLOCKING_REDIS_TIMEOUT_SECONDS
) -> redis.Redis:
    """A blocking client (one thread-safe pool) for code that runs outside the event loop."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
    )


@dataclass(frozen=True)
class RedisClients:
    """The process's Redis connections: one asyncio pool and one blocking pool."""

    #: The breaker store and ``/readyz`` (short timeouts: the breaker's own).
    asyncio: aioredis.Redis
    #: The rate limiter and the job leases.
    blocking: redis.Redis

    async def aclose(self) -> None:
        await self.asyncio.aclose()
        self.blocking.close()


def build_redis(settings: Settings) -> RedisClients | None:
    """The process's Redis clients when ``redis_url`` is set, else None (in-process state)."""
    if not settings.redis_url:
        return None
    return RedisClients(
        asyncio=build_async_redis(
            settings.redis_url, timeout_seconds=settings.circuit_breaker.redis_timeout_seconds
        ),
        blocking=build_blocking_redis(settings.redis_url),
    )


def build_job_lock(
    settings: Settings, engine: Engine, *, redis_client: redis.Redis | None
) -> JobLock:
    """The scheduler's job leases, shared by every replica that can share them.

    Redis when ``redis_url`` is set (over ``redis_client``, the process's blocking
    client); else the database's advisory locks when it has them (PostgreSQL:
    replicas on several hosts); else lock files on this host (SQLite), in
    ``monitoring.lock_dir`` or a temporary directory named after the database.
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from bookingguard.db.job_locks import database_locks
    from bookingguard.monitoring.locks import FileJobLock, HeldLockJobLock, RedisJobLock

    prefix = settings.monitoring.lock_key_prefix
    if settings.redis_url:
        if redis_client is None:
            raise ValueError("redis_url is set: pass the process's Redis client for the leases")
        return RedisJobLock(redis_client, prefix=prefix)
    shared = database_locks(engine, namespace=prefix)
    if shared is not None:
        return HeldLockJobLock(shared)
    if settings.monitoring.lock_dir:
        return FileJobLock(Path(settings.monitoring.lock_dir))
    digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
    return FileJobLock(Path(tempfile.gettempdir()) / f"bookingguard-locks-{digest}")


def build_monitoring(
    settings: Settings,
    engine: Engine,
    *,
    registry: CollectorRegistry | None = None,
    redis_client: redis.Redis | None = None,
) -> MonitoringService:
    """The monitoring service (checks, alerts, delivery, report) over ``engine``.

    With a Prometheus ``registry`` its metrics are registered there (``/metrics``).
    Its job leases (``build_job_lock``) use ``redis_client`` (the process's blocking
    client); with none and a ``redis_url``, one is built for it (a CLI run that
    builds nothing else).
    """
    from bookingguard.monitoring.metrics import MonitorMetrics
    from bookingguard.monitoring.service import MonitoringService

    metrics = MonitorMetrics(registry) if registry is not None else None

    def booking_source() -> AbstractAsyncContextManager[BookingSource]:
        return calcom_booking_source(settings)

    return MonitoringService(
        session_factory(engine),
        settings,
        metrics=metrics,
        lock=build_job_lock(
            settings,
            engine,
            redis_client=redis_client
            if redis_client is not None or not settings.redis_url
            else build_blocking_redis(settings.redis_url),
        ),
        booking_source=booking_source if settings.calcom.api_key is not None else None,
    )


@asynccontextmanager
async def calcom_booking_source(settings: Settings) -> AsyncIterator[BookingSource]:
    """Cal.com's bookings for reconciliation, over a client closed on exit."""
    from bookingguard.calcom import CalcomNotFoundError
    from bookingguard.monitoring.reconcile import ClientBookingSource

    async with CalcomClient.from_settings(settings) as client:
        yield ClientBookingSource(client, not_found=CalcomNotFoundError)


def build_circuit_breaker(
    settings: Settings,
    engine: Engine,
    *,
    registry: CollectorRegistry | None = None,
    redis_client: aioredis.Redis | None = None,
) -> CircuitBreaker:
    """The circuit breaker over Redis → SQL (on ``engine``) → memory, audited to ``engine``.

    Redis leads when ``redis_client`` (the process's asyncio client) is given.
    """
    return CircuitBreaker.from_settings(
        settings, engine=engine, redis_client=redis_client, registry=registry
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


def build_booking_service(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    calcom: CalcomClient,
    breaker: Breaker,
    retrier: Retrier,
    clock: Callable[[], datetime] = utc_now,
    metrics: BookingMetrics | None = None,
) -> BookingService:
    """The booking path: Cal.com client under the breaker and retry, validator, rollback."""
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
        metrics=metrics,
        claims=ClaimWaiter(store, wait_seconds=settings.validation.claim_wait_seconds),
        claim_stale_seconds=settings.validation.claim_stale_seconds,
    )


@dataclass
class Services:
    """Everything the HTTP app and the CLI reach: built once, closed once."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    calcom: CalcomClient
    breaker: CircuitBreaker | None
    booking: BookingService
    call_events: CallEventRecorder
    clock: Callable[[], datetime]
    redis: RedisClients | None = None

    async def aclose(self) -> None:
        await self.calcom.aclose()
        await self.booking.aclose()
        if self.breaker is not None:
            await self.breaker.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.engine.dispose()


def build_services(
    settings: Settings,
    *,
    breaker: Breaker | None = None,
    retrier: Retrier | None = None,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
    calcom_transport: httpx.AsyncBaseTransport | None = None,
    metrics: BookingMetrics | None = None,
    redis_clients: RedisClients | None = None,
) -> Services:
    """Build the services for ``settings`` (the caller closes them with ``aclose()``).

    By default the booking path runs under ``CircuitBreaker.from_settings`` (Redis →
    SQL → memory) and ``retry_async`` with ``RetryPolicy.from_settings``; tests may
    hand in their own ``breaker`` and ``retrier``. The Services own (and close) the
    ``redis_clients`` given or, when ``redis_url`` is set, the ones built here.
    """
    engine = engine if engine is not None else build_engine(settings)
    redis_clients = redis_clients if redis_clients is not None else build_redis(settings)
    sessions = session_factory(engine)
    metrics = metrics if metrics is not None else default_booking_metrics()
    calcom = CalcomClient.from_settings(settings, transport=calcom_transport)
    circuit_breaker: CircuitBreaker | None = None
    if breaker is None:
        circuit_breaker = build_circuit_breaker(
            settings,
            engine,
            redis_client=redis_clients.asyncio if redis_clients is not None else None,
        )
        breaker = circuit_breaker
    booking = build_booking_service(
        settings,
        sessions=sessions,
        calcom=calcom,
        breaker=breaker,
        retrier=retrier
        or PolicyRetrier(RetryPolicy.from_settings(settings), on_retry=metrics.record_retry),
        clock=clock,
        metrics=metrics,
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        calcom=calcom,
        breaker=circuit_breaker,
        booking=booking,
        call_events=CallEventRecorder(
            sessions, clock=clock, outcome_mapping=settings.retell.outcome_mapping
        ),
        clock=clock,
        redis=redis_clients,
    )
