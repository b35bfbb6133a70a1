"""``install_operator_surface``: adds auth, rate limits, problem errors, the review API and the
dashboard to a FastAPI app that ``create_app`` built.

The other ``/api/v1`` routers (consistency, alerts, circuit breakers, reports) are
passed as ``api_routers`` so they share the same prefix, rate limit and errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy import Engine

from bookingguard.api.auth import enforce_rate_limit
from bookingguard.api.context import AlertActions, Clock, OperatorContext, utc_now
from bookingguard.api.dashboard import routes as dashboard
from bookingguard.api.problem_details import API_ERROR_RESPONSES, install_problem_handlers
from bookingguard.api.ratelimit import RateLimiter
from bookingguard.api.v1 import review
from bookingguard.db.uow import session_factory
from bookingguard.settings import Settings
from bookingguard.tokens import StaticToken, static_tokens

__all__ = ["API_PREFIX", "install_operator_surface"]

API_PREFIX = "/api/v1"


def install_operator_surface(
    app: FastAPI,
    settings: Settings,
    *,
    engine: Engine,
    api_routers: Sequence[APIRouter] = (),
    extra_tokens: Sequence[StaticToken] = (),
    rate_limiter: RateLimiter | None = None,
    clock: Clock = utc_now,
    registry: CollectorRegistry = REGISTRY,
    alert_actions: AlertActions | None = None,
) -> OperatorContext:
    """Install the operator surface on ``app`` and return the context it keeps in app.state.

    ``extra_tokens`` sign in to the dashboard once each, besides ``api.tokens`` and the
    stored tokens (they are no API tokens); ``serve`` passes the one-time login token it
    printed when no token exists yet.
    ``alert_actions`` (e.g. ``bookingguard.monitoring.admin``) enables acknowledge and
    resolve on the dashboard's alerts page.
    """
    limiter = rate_limiter or RateLimiter.from_settings(settings, redis_client=None)
    context = OperatorContext(
        settings=settings,
        sessions=session_factory(engine),
        rate_limiter=limiter,
        static_tokens=static_tokens(settings),
        login_tokens=list(extra_tokens),
        login_limiter=RateLimiter(
            settings.api.login_rate_limit, limiter.storage, namespace="bookingguard:login"
        ),
        clock=clock,
        registry=registry,
        alert_actions=alert_actions,
    )
    app.state.operator = context
    install_problem_handlers(app)
    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(enforce_rate_limit)],
        responses=API_ERROR_RESPONSES,
    )
    api.include_router(review.router)
    for router in api_routers:
        api.include_router(router)
    app.include_router(api)
    app.include_router(dashboard.router)
    app.mount(
        dashboard.STATIC_URL,
        StaticFiles(directory=dashboard.STATIC_DIRECTORY),
        name="dashboard-static",
    )
    return context
