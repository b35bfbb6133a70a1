"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from bookingguard.db.engine import make_engine
from bookingguard.resilience import CircuitBreaker
from bookingguard.settings import Settings

if TYPE_CHECKING:
    from bookingguard.monitoring.service import MonitoringService

__all__ = ["build_circuit_breaker", "build_engine", "build_monitoring"]


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)


def build_monitoring(
    settings: Settings, engine: Engine, *, registry: CollectorRegistry | None = None
) -> MonitoringService:
    """The monitoring service (checks, alerts, delivery, report) over ``engine``.

    With a Prometheus ``registry`` its metrics are registered there (``/metrics``).
    """
    from bookingguard.db.uow import session_factory
    from bookingguard.monitoring.locks import job_lock_from_settings
    from bookingguard.monitoring.metrics import MonitorMetrics
    from bookingguard.monitoring.service import MonitoringService

    metrics = MonitorMetrics(registry) if registry is not None else None
    return MonitoringService(
        session_factory(engine),
        settings,
        metrics=metrics,
        lock=job_lock_from_settings(settings),
    )


def build_circuit_breaker(
    settings: Settings, engine: Engine, *, registry: CollectorRegistry | None = None
) -> CircuitBreaker:
    """The circuit breaker over Redis → SQL (on ``engine``) → memory, audited to ``engine``."""
    return CircuitBreaker.from_settings(settings, engine=engine, registry=registry)
