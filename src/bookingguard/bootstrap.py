"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import httpx
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
from bookingguard.calcom import CalcomClient
from bookingguard.db.engine import make_engine
from bookingguard.db.uow import session_factory
from bookingguard.resilience import CircuitBreaker
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.settings import Settings

if TYPE_CHECKING:
    from bookingguard.monitoring.reconcile import BookingSource
    from bookingguard.monitoring.service import MonitoringService

__all__ = [
    "PolicyRetrier",
    "Services",
    "build_booking_service",
    "build_circuit_breaker",
    "build_engine",
    "build_monitoring",
    "build_services",
    "calcom_booking_source",
    "utc_now",
]

T = TypeVar("T")


def utc_now() -> datetime:
    """The wall clock, as an aware UTC datetime (what services are given as ``clock``)."""
    return datetime.now(UTC)


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)


def build_monitoring(
    settings: Settings, engine: Engine, *, registry: CollectorRegistry | None = None
) -> MonitoringService:
    """The monitoring service (checks, alerts, delivery, report) over ``engine``.

    With a Prometheus ``registry`` its metrics are registered there (``/metrics``).
    """
    from bookingguard.monitoring.locks import job_lock_from_settings
    from bookingguard.monitoring.metrics import MonitorMetrics
    from bookingguard.monitoring.service import MonitoringService

    metrics = MonitorMetrics(registry) if registry is not None else None

    def booking_source() -> AbstractAsyncContextManager[BookingSource]:
        return calcom_booking_source(settings)

    return MonitoringService(
        session_factory(engine),
        settings,
        metrics=metrics,
        lock=job_lock_from_settings(settings),
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
    settings: Settings, engine: Engine, *, registry: CollectorRegistry | None = None
) -> CircuitBreaker:
    """The circuit breaker over Redis → SQL (on ``engine``) → memory, audited to ``engine``."""
    return CircuitBreaker.from_settings(settings, engine=engine, registry=registry)


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
    return BookingService(
        store=SqlBookingStore(sessions),
        calcom=calcom,
        breaker=breaker,
        retrier=retrier,
        validator=validator,
        clock=clock,
        metrics=metrics,
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

    async def aclose(self) -> None:
        await self.calcom.aclose()
        await self.booking.aclose()
        if self.breaker is not None:
            await self.breaker.aclose()
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
) -> Services:
    """Build the services for ``settings`` (the caller closes them with ``aclose()``).

    By default the booking path runs under ``CircuitBreaker.from_settings`` (Redis →
    SQL → memory) and ``retry_async`` with ``RetryPolicy.from_settings``; tests may
    hand in their own ``breaker`` and ``retrier``.
    """
    engine = engine if engine is not None else build_engine(settings)
    sessions = session_factory(engine)
    metrics = metrics if metrics is not None else default_booking_metrics()
    calcom = CalcomClient.from_settings(settings, transport=calcom_transport)
    circuit_breaker: CircuitBreaker | None = None
    if breaker is None:
        circuit_breaker = build_circuit_breaker(settings, engine)
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
    )
