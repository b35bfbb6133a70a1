"""Error answers: one JSON shape for 400, 401 and 422, with a message a person can act on."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

__all__ = [
    "MAX_JSON_DEPTH",
    "WEBHOOK_ERROR_RESPONSES",
    "ProblemError",
    "parse_json",
    "problem_handler",
    "validate_body",
]

M = TypeVar("M", bound=BaseModel)

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}

#: The OpenAPI ``responses`` of routes that answer with ``ProblemError``.
WEBHOOK_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for status, description in (
        (400, "Malformed JSON"),
        (401, "Missing, wrong or stale signature"),
        (413, "The body is larger than the configured limit"),
        (429, "Too many requests with a bad signature from this client"),
        (422, "The body does not match the expected shape"),
    )
}


class ProblemError(Exception):
    """Raised in a route to answer ``status`` with ``{"detail", "errors"}``."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        headers = {"WWW-Authenticate": "Signature"} if self.status == 401 else {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(body, status_code=self.status, headers=headers)


async def problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return exc.response()


#: Deepest nesting of arrays and objects a parsed body may have (Retell's and Cal.com's are < 10).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def _nesting_depth(body: bytes, limit: int) -> int:
    """How deep ``body``'s arrays and objects nest, counted up to ``limit + 1`` at most."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return depth
        else:
            depth -= 1
    return 0


def parse_json(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in ``body``, or a 400 saying where it breaks or that it nests too deep.

    The depth is checked before parsing: ``json.loads`` would recurse once per level.
    """
    if _nesting_depth(body, max_depth) > max_depth:
        raise ProblemError(400, f"malformed JSON: nested deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProblemError(400, f"malformed JSON: {exc}") from None


def validate_body(model: type[M], document: Any) -> M:
    """``document`` as ``model``, or a 422 naming every offending field."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or "body",
                "message": error["msg"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ProblemError(422, f"invalid body: {detail}", errors) from None
