"""Dashboard routes: login by one-time URL, then server-rendered pages behind a cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bookingguard.api.auth import SESSION_COOKIE, principal_for_secret
from bookingguard.api.context import OperatorContext, operator_context

__all__ = ["login_url", "router"]

router = APIRouter(include_in_schema=False)

Context = Annotated[OperatorContext, Depends(operator_context)]


def login_url(base_url: str, secret: str) -> str:
    """The URL ``serve`` prints: opening it sets the dashboard cookie (as Jupyter does)."""
    return f"{base_url.rstrip('/')}/login?token={secret}"


@router.get("/login")
def login(
    request: Request, context: Context, token: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    """Check the token, keep it in an HttpOnly cookie and go to the overview."""
    principal = principal_for_secret(context, token) if token else None
    if principal is None:
        return HTMLResponse(
            "<!doctype html><title>bookingguard: login</title><h1>Not signed in</h1>"
            "<p>Open the login URL that <code>bookingguard serve</code> printed, or "
            "<code>/login?token=…</code> with a token from "
            "<code>bookingguard token create</code>.</p>",
            status_code=401,
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=7 * 24 * 3600,
    )
    return response


@router.get("/logout")
def logout() -> Response:
    """Forget the cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
