"""``create_app(settings)``: the FastAPI application, composed of routers in their own modules.

The services come from ``bootstrap``: built in the app's lifespan from the
settings, or handed in ready-made (tests, embedding apps), in which case the
caller owns and closes them. Routes reach them through ``deps.get_services``.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from
``/docs/assets``, files of the ``fastapi-offline`` package, not from a CDN: they
work on a network without Internet access.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from bookingguard.api.limits import BodyLimitMiddleware
from bookingguard.api.openapi_links import document_raw_bodies
from bookingguard.api.problems import ProblemError, problem_handler
from bookingguard.api.routes import calcom, retell
from bookingguard.api.security_headers import SecurityHeadersMiddleware
from bookingguard.api.signature_limits import install_signature_limiter
from bookingguard.bootstrap import Services, build_services
from bookingguard.settings import Settings

__all__ = ["DOCS_ASSETS", "create_app"]

#: Where Swagger UI's and ReDoc's JavaScript, CSS and favicon are served.
DOCS_ASSETS = "/docs/assets"


def _build_default(settings: Settings) -> Services:
    return build_services(settings)


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    build: Callable[[Settings], Services] = _build_default,
) -> FastAPI:
    """The HTTP service.

    By default its services are built from ``settings`` when it starts and closed
    when it stops; give ``services`` to reuse yours (you close them), or ``build``
    to make them differently.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        built = build(settings)
        app.state.services = built
        try:
            yield
        finally:
            await built.aclose()

    app = FastAPIOffline(
        title="bookingguard",
        version="0.1.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        # Swagger UI's default would send the schema to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    if services is not None:
        app.state.services = services
    app.add_exception_handler(ProblemError, problem_handler)
    install_signature_limiter(app, settings)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.api.max_body_bytes,
        max_webhook_body_bytes=settings.api.max_webhook_body_bytes,
    )
    # Added last, so outermost: the 413s get the headers too.
    app.add_middleware(SecurityHeadersMiddleware)
    app.include_router(retell.router)
    app.include_router(calcom.router)
    document_raw_bodies(app)
    return app
