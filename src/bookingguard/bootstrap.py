"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking import (
    BookingMetrics,
    BookingService,
    Breaker,
    PostBookingValidator,
    Retrier,
    default_booking_metrics,
)
from bookingguard.calcom import CalcomClient
from bookingguard.db.engine import make_engine
from bookingguard.db.uow import session_factory
from bookingguard.settings import Settings

__all__ = ["Services", "build_booking_service", "build_engine", "build_services", "utc_now"]


def utc_now() -> datetime:
    """The wall clock, as an aware UTC datetime (what services are given as ``clock``)."""
    return datetime.now(UTC)


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)


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
        sessions=sessions,
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
    booking: BookingService
    clock: Callable[[], datetime]

    async def aclose(self) -> None:
        await self.calcom.aclose()
        self.engine.dispose()


def build_services(
    settings: Settings,
    *,
    breaker: Breaker,
    retrier: Retrier,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
    calcom_transport: httpx.AsyncBaseTransport | None = None,
    metrics: BookingMetrics | None = None,
) -> Services:
    """Build the services for ``settings`` (the caller closes them with ``aclose()``)."""
    engine = engine if engine is not None else build_engine(settings)
    sessions = session_factory(engine)
    calcom = CalcomClient.from_settings(settings, transport=calcom_transport)
    booking = build_booking_service(
        settings,
        sessions=sessions,
        calcom=calcom,
        breaker=breaker,
        retrier=retrier,
        clock=clock,
        metrics=metrics,
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        calcom=calcom,
        booking=booking,
        clock=clock,
    )
