"""What the operator routes share, kept on ``app.state.operator`` (nothing global)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from fastapi import Request
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.api.ratelimit import RateLimiter
from bookingguard.clock import Clock, utc_now
from bookingguard.settings import Settings
from bookingguard.tokens import StaticToken

__all__ = ["AlertActions", "Clock", "OperatorContext", "operator_context", "utc_now"]


class AlertActions(Protocol):
    """Acknowledging and resolving alerts (the monitor's ``admin`` module fits). Flush only."""

    def acknowledge(self, session: Session, alert_id: int, *, by: str, now: datetime) -> object: ...

    def resolve(self, session: Session, alert_id: int, *, by: str, now: datetime) -> object: ...


@dataclass
class OperatorContext:
    """Settings, sessions, tokens, rate limiter and metrics the operator surface runs on."""

    settings: Settings
    sessions: sessionmaker[Session]
    rate_limiter: RateLimiter
    static_tokens: Sequence[StaticToken] = ()
    #: One-time dashboard login tokens (``serve``'s printed link): they sign in once, no API use.
    login_tokens: Sequence[StaticToken] = ()
    #: Counts sign-in attempts per client (``api.login_rate_limit``); none when unset.
    login_limiter: RateLimiter | None = None
    clock: Clock = field(default=utc_now)
    #: Where the dashboard's validation page reads the process's metrics.
    registry: CollectorRegistry = field(default=REGISTRY)
    #: When set, the dashboard's alerts page offers acknowledge and resolve.
    alert_actions: AlertActions | None = None


async def operator_context(request: Request) -> OperatorContext:
    context = getattr(request.app.state, "operator", None)
    if not isinstance(context, OperatorContext):
        raise RuntimeError("install_operator_surface() was not called on this app")
    return context
