"""RFC 9457 problem details: every error as ``application/problem+json``.

``install_problem_handlers(app)`` maps HTTP errors, request-validation errors and
domain errors to ``{"type", "title", "status", "detail", "instance"}``; headers
such as ``WWW-Authenticate`` and ``Retry-After`` are kept. A database that does not
answer is a 503 with ``Retry-After`` (the request can be repeated), a value the
database refuses a 422. Unexpected exceptions become a 500 problem without internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "API_ERROR_RESPONSES",
    "PROBLEM_MEDIA_TYPE",
    "ProblemDetail",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://bookingguard.dev/problems/"

logger = structlog.get_logger(__name__)

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid API token (missing, unknown or revoked)",
    403: "The token's scope does not allow this",
    404: "Not found",
    409: "Conflicts with the resource's current state",
    422: "Invalid input; `errors` names the offending fields",
    429: "Over the rate limit; retry after `Retry-After` seconds",
    503: "The database is unavailable; retry after `Retry-After` seconds",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting ``statuses`` as problem+json."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}
            }
        responses[status] = entry
    return responses


#: What every ``/api/v1`` operation can answer besides its own responses.
API_ERROR_RESPONSES = problem_responses(401, 403, 422, 429, 503)


class ProblemDetail(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    request: Request,
    status: int,
    *,
    detail: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemDetail:
    """A problem document for ``status``; ``code`` names the problem type (default: about:blank)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code if code else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra or {})
    return ProblemDetail(jsonable_encoder(body), status_code=status, headers=dict(headers or {}))


async def _http_error(request: Request, exc: Exception) -> ProblemDetail:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(request, exc.status_code, detail=detail, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> ProblemDetail:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors
    )
    return problem_response(
        request,
        422,
        detail=f"invalid request: {summary}",
        code="validation_error",
        extra={"errors": errors},
    )


#: Seconds a client is asked to wait when the database does not answer.
DATABASE_RETRY_AFTER_SECONDS = 5


async def _database_unavailable(request: Request, exc: Exception) -> ProblemDetail:
    logger.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        request,
        503,
        detail="the database is unavailable; retry later",
        code="database_unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _database_refused_value(request: Request, exc: Exception) -> ProblemDetail:
    logger.warning("database refused a value", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        request,
        422,
        detail="a value is out of range or not storable (too long, NUL character, too large)",
        code="validation_error",
    )


async def _unexpected_error(request: Request, exc: Exception) -> ProblemDetail:
    logger.exception("unhandled error", path=request.url.path, error=type(exc).__name__)
    return problem_response(request, 500, detail="internal error; see the service log")


def install_problem_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for unavailable in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(DataError, _database_refused_value)
    app.add_exception_handler(Exception, _unexpected_error)
