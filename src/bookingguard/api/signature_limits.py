"""Failed webhook signatures are counted per client: past ``api.signature_failure_rate_limit``
the refusal is a 429 with ``Retry-After`` instead of a 401.

Only failures count, so a client whose requests are signed is never slowed; one
that keeps guessing is told to stop. The counter lives where the API's rate
limits do (Redis when configured, so every replica shares it).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from limits.storage import MemoryStorage, Storage

from bookingguard.api.auth import client_ip
from bookingguard.api.problems import ProblemError
from bookingguard.api.ratelimit import RateLimiter
from bookingguard.settings import Settings

__all__ = ["install_signature_limiter", "signature_refusal"]


def install_signature_limiter(
    app: FastAPI, settings: Settings, *, storage: Storage | None = None
) -> None:
    """Count ``app``'s failed signatures over ``storage`` (process memory by default)."""
    app.state.signature_limiter = RateLimiter(
        settings.api.signature_failure_rate_limit,
        storage if storage is not None else MemoryStorage(),
        namespace="bookingguard:signature",
    )


def signature_refusal(request: Request, detail: str) -> ProblemError:
    """The error to raise for a failed signature: 401, or 429 once the client is over the limit."""
    limiter: RateLimiter | None = getattr(request.app.state, "signature_limiter", None)
    if limiter is None:
        return ProblemError(401, detail)
    decision = limiter.hit(f"ip:{client_ip(request)}")
    if decision.allowed:
        return ProblemError(401, detail)
    return ProblemError(
        429,
        f"too many requests with a bad signature; retry in {decision.retry_after} s",
        retry_after=decision.retry_after,
    )
