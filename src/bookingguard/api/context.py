"""What the operator routes share, kept on ``app.state.operator`` (nothing global)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.api.ratelimit import RateLimiter
from bookingguard.settings import Settings
from bookingguard.tokens import StaticToken

__all__ = ["Clock", "OperatorContext", "operator_context", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OperatorContext:
    """Settings, sessions, tokens and the rate limiter the operator surface runs on."""

    settings: Settings
    sessions: sessionmaker[Session]
    rate_limiter: RateLimiter
    static_tokens: Sequence[StaticToken] = ()
    clock: Clock = field(default=utc_now)


def operator_context(request: Request) -> OperatorContext:
    context = getattr(request.app.state, "operator", None)
    if not isinstance(context, OperatorContext):
        raise RuntimeError("install_operator_surface() was not called on this app")
    return context
