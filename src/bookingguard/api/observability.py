"""Structured logs (structlog) with a request id on every line, and the access log.

``configure_logging`` sends structlog and the standard library (uvicorn, APScheduler)
through one renderer: JSON, or structlog's readable console lines on a terminal
(``logging.format``: ``auto``, ``json`` or ``console``). ``RequestIdMiddleware``
binds ``request_id`` (an incoming ``X-Request-ID`` is honoured, else a new one is
made) to the context for every line logged while the request runs, returns it in
the response and writes one access-log line without the query string:
``/login?token=…`` carries a secret.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from bookingguard.settings import LoggingSettings

__all__ = ["REQUEST_ID_HEADER", "RequestIdMiddleware", "configure_logging"]

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

access_log = structlog.get_logger("bookingguard.access")


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's direct writer, carrying the name ``get_logger(name)`` was given."""

    def __init__(self, name: str, stream: TextIO) -> None:
        super().__init__(stream)
        self.name = name


def _renderer(chosen: str, stream: TextIO) -> structlog.types.Processor:
    """JSON, or readable lines (``auto`` on a terminal), coloured only on a terminal."""
    terminal = stream.isatty()
    if chosen == "console" or (chosen == "auto" and terminal):
        return structlog.dev.ConsoleRenderer(colors=terminal)
    return structlog.processors.JSONRenderer()


def configure_logging(
    settings: LoggingSettings | None = None, *, stream: TextIO | None = None
) -> None:
    """Every log line on ``stream`` (stderr), for structlog and standard-library loggers alike.

    ``settings`` (``logging.level`` and ``logging.format``; default INFO, ``auto``)
    picks the level and the renderer. structlog's own loggers (the access log among
    them) render and write directly, skipping the standard library's records: a line
    per request stays cheap.
    """
    out = stream if stream is not None else sys.stderr
    level = logging.getLevelNamesMapping()[settings.level if settings else "INFO"]
    renderer = _renderer(settings.format if settings else "auto", out)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The console renderer lays out tracebacks itself; JSON needs them as text.
    exceptions = (
        []
        if isinstance(renderer, structlog.dev.ConsoleRenderer)
        else [structlog.processors.format_exc_info]
    )

    def named_write_logger(*args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(str(args[0]) if args else "", out)

    structlog.configure(
        processors=[*shared, *exceptions, renderer],
        logger_factory=named_write_logger,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our middleware writes the access log, without query strings.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("apscheduler", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RequestIdMiddleware:
    """Binds a request id to every log line of a request and echoes it as ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        encoded = request_id.encode("latin-1")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", encoded)]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
