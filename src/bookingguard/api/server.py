"""``build_server_app(settings)``: the whole served application, as ``bookingguard serve`` runs it.

``create_app`` (webhooks, the agent's booking function) plus the operator surface
(dashboard, review queue) with the monitoring and circuit-breaker routers under
``/api/v1``, ``/healthz``, ``/readyz`` and ``/metrics``. Every collector is
registered on one Prometheus registry, the one ``/metrics`` serves; under
``serve --workers`` (prometheus_client's multiprocess mode) ``/metrics`` and the
dashboard read every worker's values instead. With ``background=True`` the
monitor's scheduled work runs while the app does, and the spool of failed-booking
records is replayed into the database every ``spool.replay_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from bookingguard.api.access import login_token
from bookingguard.api.app import create_app
from bookingguard.api.auth import require_scope
from bookingguard.api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from bookingguard.api.observability import RequestIdMiddleware, configure_logging
from bookingguard.api.openapi_links import document_links
from bookingguard.api.operator import install_operator_surface
from bookingguard.api.ratelimit import RateLimiter
from bookingguard.api.readiness import (
    database_check,
    notifications_check,
    readiness,
    redis_check,
    spool_check,
)
from bookingguard.api.signature_limits import install_signature_limiter
from bookingguard.api.v1 import breakers, monitoring
from bookingguard.api.v1.backends import ApiBackends
from bookingguard.booking import BookingMetrics
from bookingguard.bootstrap import (
    build_circuit_breaker,
    build_engine,
    build_monitoring,
    build_redis,
    build_services,
)
from bookingguard.db import migrate
from bookingguard.monitoring import admin, scheduler
from bookingguard.resilience import BreakerMetrics
from bookingguard.settings import Settings, load_settings
from bookingguard.tokens import StaticToken

__all__ = [
    "LOGIN_SECRET_ENV",
    "METRICS_DIR_ENV",
    "build_server_app",
    "metrics_view",
    "serving_app",
    "worker_app",
]

#: How ``serve --workers`` hands its one-time dashboard login secret to the workers.
LOGIN_SECRET_ENV = "BOOKINGGUARD_SERVE_LOGIN_SECRET"  # noqa: S105 (a variable's name)
#: prometheus_client's multiprocess mode: set before the workers start, each keeps its
#: metric values in files there (chosen when prometheus_client is first imported).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How long ``/metrics`` waits for the breaker store's circuits before rendering without.
CIRCUIT_READ_SECONDS = 2.0

log = logging.getLogger(__name__)


def metrics_view(
    registry: CollectorRegistry, *, scrape_time: Iterable[Collector] = ()
) -> CollectorRegistry:
    """What ``/metrics`` and the dashboard read: ``registry``, or every process's values.

    In multiprocess mode the values live in one file per process: counters and
    histograms are summed over the workers, gauges combine as their declaration
    says (``metrics_catalog``). ``scrape_time`` collectors (registered on
    ``registry`` too) read shared state when scraped, so they join the combined view
    as they are.
    """
    directory = os.environ.get(METRICS_DIR_ENV)
    if not directory:
        return registry
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    for collector in scrape_time:
        combined.register(collector)
    return combined


def build_server_app(
    settings: Settings,
    *,
    extra_tokens: Sequence[StaticToken] = (),
    background: bool = False,
    engine: Engine | None = None,
) -> FastAPI:
    """The composed app; it closes what it built when it stops.

    ``extra_tokens`` (the one-time dashboard login of ``serve``) are accepted besides
    the configured and stored tokens; ``background`` starts the monitor's scheduler
    and the spool's replay.
    """
    engine = engine if engine is not None else build_engine(settings)
    redis_clients = build_redis(settings)
    redis_client = redis_clients.asyncio if redis_clients is not None else None
    blocking_redis = redis_clients.blocking if redis_clients is not None else None
    registry = CollectorRegistry()
    booking_metrics = BookingMetrics(registry)
    breaker = build_circuit_breaker(settings, engine, registry=registry, redis_client=redis_client)
    monitor = build_monitoring(settings, engine, registry=registry, redis_client=blocking_redis)
    services = build_services(
        settings,
        breaker=breaker,
        engine=engine,
        metrics=booking_metrics,
        redis_clients=redis_clients,
    )
    app = create_app(settings, services=services)
    rate_limiter = RateLimiter.from_settings(settings, redis_client=blocking_redis)
    install_signature_limiter(app, settings, storage=rate_limiter.storage)
    breaker_metrics = BreakerMetrics.for_registry(registry)
    readable = metrics_view(registry, scrape_time=[breaker_metrics.state])
    install_operator_surface(
        app,
        settings,
        engine=engine,
        api_routers=[monitoring.router, breakers.router],
        extra_tokens=extra_tokens,
        rate_limiter=rate_limiter,
        registry=readable,
        alert_actions=admin,
    )
    app.state.backends = ApiBackends(monitoring=monitor, breaker=breaker)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    head = migrate.head_revision(engine)

    inner_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        jobs = scheduler.start_background(monitor) if background else None
        tasks = (
            [
                asyncio.create_task(
                    services.spool_replayer.run_forever(settings.spool.replay_interval_seconds)
                ),
                asyncio.create_task(services.claim_settler.run_forever()),
            ]
            if background
            else []
        )
        try:
            async with inner_lifespan(app) as state:
                yield state
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if jobs is not None:
                await anyio.to_thread.run_sync(jobs.shutdown)
            await breaker.aclose()
            await services.aclose()

    app.router.lifespan_context = lifespan

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness",
        responses={503: {"description": "A dependency is not ready"}},
    )
    async def readyz() -> JSONResponse:
        """200 ``ok``; 200 ``degraded`` naming what fails besides the database; 503 without it."""
        checks = {"database": await anyio.to_thread.run_sync(database_check, engine, head)}
        if checks["database"] == "ok":
            checks["notifications"] = await anyio.to_thread.run_sync(notifications_check, engine)
        checks["spool"] = await anyio.to_thread.run_sync(spool_check, services.spool)
        if redis_client is not None:
            checks["redis"] = await redis_check(redis_client)
        ready = readiness(checks)
        return JSONResponse(
            {"status": ready.status, "checks": dict(ready.checks)}, status_code=ready.http_status
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        # api.metrics_token_required: a scraper presents a read token, as the API asks.
        dependencies=[Depends(require_scope("read"))]
        if settings.api.metrics_token_required
        else [],
    )
    async def metrics() -> Response:
        """Every collector (of every worker), in the Prometheus text format.

        The circuits' state is read from the breaker's store first, so every
        replica and worker reports the state the store holds now.
        """
        try:
            with anyio.fail_after(CIRCUIT_READ_SECONDS):
                circuits = await breaker.list_circuits()
        except Exception:
            log.warning("could not read the circuits for /metrics", exc_info=True)
        else:
            breaker_metrics.observe_store(circuits)
        try:
            await services.spool_replayer.observe_backlog()
        except Exception:
            log.warning("could not read the spool's backlog for /metrics", exc_info=True)
        return Response(generate_latest(readable), media_type=CONTENT_TYPE_LATEST)

    document_links(app)
    return app


def serving_app(
    settings: Settings,
    *,
    extra_tokens: Sequence[StaticToken] = (),
    engine: Engine | None = None,
) -> FastAPI:
    """The app one ``serve`` process runs: background work on, its build frozen.

    What the app is built of lives as long as the process, so it is frozen out of
    the garbage collector's sight (``gc.freeze``): collections under load stay short
    (webhook p99 27-39 ms instead of 72-93 ms in ``bench/api_load.py``).
    """
    app = build_server_app(settings, extra_tokens=extra_tokens, background=True, engine=engine)
    gc.freeze()
    return app


def worker_app() -> FastAPI:
    """The app of one ``serve --workers`` process, from the settings its parent read.

    The parent passes the configuration file (``BOOKINGGUARD_CONFIG``) and the
    login secret (``LOGIN_SECRET_ENV``) in the environment the workers inherit.
    """
    settings = load_settings()
    configure_logging(settings.logging)
    secret = os.environ.get(LOGIN_SECRET_ENV)
    return serving_app(settings, extra_tokens=[login_token(secret)] if secret else [])
