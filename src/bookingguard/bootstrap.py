"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from bookingguard.db.engine import make_engine
from bookingguard.resilience import CircuitBreaker
from bookingguard.settings import Settings

__all__ = ["build_circuit_breaker", "build_engine"]


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)


def build_circuit_breaker(
    settings: Settings, engine: Engine, *, registry: CollectorRegistry | None = None
) -> CircuitBreaker:
    """The circuit breaker over Redis → SQL (on ``engine``) → memory, audited to ``engine``."""
    return CircuitBreaker.from_settings(settings, engine=engine, registry=registry)
