"""Everything a served process or a CLI command needs, built at once (``build_services``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking import (
    BookingMetrics,
    BookingService,
    Breaker,
    Retrier,
    default_booking_metrics,
)
from bookingguard.booking.calls import CallEventRecorder
from bookingguard.booking.claim_settler import ClaimSettler
from bookingguard.booking.spool_replay import SpoolReplayer
from bookingguard.bootstrap.booking import (
    PolicyRetrier,
    build_booking_service,
    build_circuit_breaker,
    build_spool,
)
from bookingguard.bootstrap.clients import RedisClients, build_engine, build_redis
from bookingguard.calcom import CalcomClient
from bookingguard.clock import utc_now
from bookingguard.db.spool import Spool
from bookingguard.db.uow import session_factory
from bookingguard.resilience import CircuitBreaker
from bookingguard.resilience.retry import RetryPolicy
from bookingguard.settings import Settings


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
    spool: Spool
    spool_replayer: SpoolReplayer
    claim_settler: ClaimSettler
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
    spool = build_spool(settings)
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
        spool=spool,
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
        spool=spool,
        spool_replayer=SpoolReplayer(
            spool=spool,
            store=booking.store,
            metrics=metrics,
            transitions=breaker.audit if isinstance(breaker, CircuitBreaker) else None,
        ),
        claim_settler=ClaimSettler(
            service=booking,
            store=booking.store,
            clock=clock,
            stale_seconds=settings.validation.claim_stale_seconds,
            metrics=metrics,
        ),
        redis=redis_clients,
    )
