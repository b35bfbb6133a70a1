"""HTTP request count and duration by route template, method and status class.

Labels stay bounded: the route is the template the request matched
(``/api/v1/circuits/{circuit_key}``, never the path with its values), ``other``
when nothing matched; the method is one of the standard ones or ``OTHER``; the
status is its class (``2xx`` … ``5xx``).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookingguard.metrics_catalog import counter, histogram

__all__ = ["UNMATCHED_ROUTE", "HttpMetrics", "HttpMetricsMiddleware", "route_template"]

#: The route label of a request that matched no route (a 404, a scanner's probe).
UNMATCHED_ROUTE = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The two HTTP collectors, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = counter("bookingguard_http_requests_total", registry)
        self.duration = histogram("bookingguard_http_request_duration_seconds", registry)


class HttpMetricsMiddleware:
    """Counts and times every HTTP request; add it last so it sees every response."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            labels = (route_template(scope), _method(scope), f"{min(max(status // 100, 1), 5)}xx")
            self.metrics.requests.labels(*labels).inc()
            self.metrics.duration.labels(*labels).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The path template of the route the router matched (set in ``scope``), else ``other``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def _method(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in _METHODS else "OTHER"
