"""Bearer-token authentication, scopes and the per-token rate limit, as FastAPI dependencies.

``require_scope("read" | "operate")`` guards a route: 401 without a token or with
an unknown or revoked one, 403 when the token's scope is too small. Routers add
``enforce_rate_limit`` as a dependency so every request, authenticated or not, is
counted (per token name, else per client IP). The dashboard authenticates with a
cookie holding the same token, set by ``/login?token=…``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bookingguard.api.context import OperatorContext, operator_context
from bookingguard.db.uow import UnitOfWork
from bookingguard.tokens import Principal, authenticate

__all__ = [
    "SESSION_COOKIE",
    "bearer_scheme",
    "client_ip",
    "enforce_rate_limit",
    "principal_for_secret",
    "request_principal",
    "require_scope",
]

SESSION_COOKIE = "bookingguard_token"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token from `bookingguard token create` (scope read or operate).",
)

_NOT_SET = object()


def client_ip(request: Request) -> str:
    """The peer address (uvicorn's proxy-headers option makes it the real client's)."""
    return request.client.host if request.client else "unknown"


def principal_for_secret(context: OperatorContext, secret: str) -> Principal | None:
    """Authenticate ``secret`` against configured and stored tokens (committing last use)."""
    with UnitOfWork(context.sessions) as uow:
        principal = authenticate(
            uow.session, secret, static_tokens=context.static_tokens, now=context.clock()
        )
        uow.commit()
    return principal


def request_principal(
    request: Request,
    context: Annotated[OperatorContext, Depends(operator_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal | None:
    """The bearer token's principal, ``None`` when absent or invalid (cached per request)."""
    cached = getattr(request.state, "principal", _NOT_SET)
    if cached is None or isinstance(cached, Principal):
        return cached
    principal = None
    if credentials is not None and credentials.credentials:
        principal = principal_for_secret(context, credentials.credentials)
    request.state.principal = principal
    request.state.token_presented = credentials is not None
    return principal


def enforce_rate_limit(
    request: Request,
    context: Annotated[OperatorContext, Depends(operator_context)],
    principal: Annotated[Principal | None, Depends(request_principal)],
) -> None:
    """429 with ``Retry-After`` once the caller is over ``api.rate_limit``."""
    key = f"token:{principal.name}" if principal else f"ip:{client_ip(request)}"
    decision = context.rate_limiter.hit(key)
    if not decision.allowed:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {context.settings.api.rate_limit} exceeded; "
            f"retry in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
        )


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency returning the caller's principal if its token grants ``scope``.

    Async, as it only looks at what ``request_principal`` found: no worker thread.
    """

    async def dependency(
        request: Request,
        principal: Annotated[Principal | None, Depends(request_principal)],
    ) -> Principal:
        if principal is None:
            presented = getattr(request.state, "token_presented", False)
            raise HTTPException(
                status_code=401,
                detail="invalid or revoked API token" if presented else "an API token is required",
                headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token"' if presented else "Bearer"
                },
            )
        if not principal.allows(scope):
            raise HTTPException(
                status_code=403,
                detail=f"token {principal.name!r} has scope {principal.scope!r}; "
                f"this needs {scope!r}",
            )
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency
