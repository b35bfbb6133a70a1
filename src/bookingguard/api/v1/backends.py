"""What the monitoring and breaker routers run on, kept on ``app.state.backends``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from bookingguard.monitoring.service import MonitoringService
from bookingguard.resilience import CircuitBreaker

__all__ = ["ApiBackends", "api_backends"]


@dataclass
class ApiBackends:
    """The monitoring service and the circuit breaker shared by the whole app."""

    monitoring: MonitoringService
    breaker: CircuitBreaker


async def api_backends(request: Request) -> ApiBackends:
    backends = getattr(request.app.state, "backends", None)
    if not isinstance(backends, ApiBackends):
        raise RuntimeError("app.state.backends is not set: build the app with build_server_app")
    return backends
