"""The monitoring service and its job leases, and the Cal.com source reconciliation reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from bookingguard.bootstrap.clients import BlockingRedisClient, build_blocking_redis
from bookingguard.calcom import CalcomClient
from bookingguard.db.uow import session_factory
from bookingguard.settings import Settings

if TYPE_CHECKING:
    from bookingguard.monitoring.locks import JobLock
    from bookingguard.monitoring.reconcile import BookingSource
    from bookingguard.monitoring.service import MonitoringService


def build_job_lock(
    settings: Settings, engine: Engine, *, redis_client: BlockingRedisClient | None
) -> JobLock:
    """The scheduler's job leases, shared by every replica that can share them.

    Redis when ``redis_url`` is set (over ``redis_client``, the process's blocking
    client), falling back while Redis is unreachable to what is chosen without it: the
    database's advisory locks when it has them (PostgreSQL: replicas on several
    hosts); else lock files on this host (SQLite), in ``monitoring.lock_dir`` or a
    temporary directory named after the database.
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from bookingguard.db.job_locks import database_locks
    from bookingguard.monitoring.locks import (
        FallbackJobLock,
        FileJobLock,
        HeldLockJobLock,
        RedisJobLock,
    )

    prefix = settings.monitoring.lock_key_prefix
    shared = database_locks(engine, namespace=prefix)
    without_redis: JobLock
    if shared is not None:
        without_redis = HeldLockJobLock(shared)
    elif settings.monitoring.lock_dir:
        without_redis = FileJobLock(Path(settings.monitoring.lock_dir))
    else:
        digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
        without_redis = FileJobLock(Path(tempfile.gettempdir()) / f"bookingguard-locks-{digest}")
    if not settings.redis_url:
        return without_redis
    if redis_client is None:
        raise ValueError("redis_url is set: pass the process's Redis client for the leases")
    return FallbackJobLock(RedisJobLock(redis_client, prefix=prefix), without_redis)


def build_monitoring(
    settings: Settings,
    engine: Engine,
    *,
    registry: CollectorRegistry | None = None,
    redis_client: BlockingRedisClient | None = None,
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
