"""Request body limits, enforced while the body is read: an oversized request costs nothing.

``BodyLimitMiddleware`` refuses a declared ``Content-Length`` over the limit
before the route runs, and counts the chunks of a body sent without one (or
with a false one), stopping the read at the first chunk past the limit. Either
way the answer is a 413 problem, before any signature is checked: an unsigned
200 MB body is never held in memory. Webhooks and the agent's functions carry
transcripts and get ``api.max_webhook_body_bytes``; everything else (the API,
the dashboard's forms) gets ``api.max_body_bytes``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookingguard.api.problem_details import PROBLEM_MEDIA_TYPE

__all__ = ["WEBHOOK_PATH_PREFIXES", "BodyLimitMiddleware", "BodyTooLargeError"]

#: Paths whose bodies come from Retell or Cal.com.
WEBHOOK_PATH_PREFIXES = ("/webhooks/", "/retell/functions/")


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once the body passes its limit (FastAPI lets it through as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    """ASGI middleware: 413 for a body over the limit of its path, checked while reading."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_webhook_body_bytes: int,
        webhook_prefixes: Sequence[str] = WEBHOOK_PATH_PREFIXES,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_webhook_body_bytes = max_webhook_body_bytes
        self.webhook_prefixes = tuple(webhook_prefixes)

    def limit_for(self, path: str) -> int:
        if path.startswith(self.webhook_prefixes):
            return self.max_webhook_body_bytes
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await _refuse(scope, send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"request body larger than {limit} bytes",
            "instance": scope["path"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
