"""Dashboard routes: a token is exchanged for a session, then server-rendered pages.

``/login?token=…`` (the URL ``serve`` prints) or a ``POST /login`` form checks the
token and opens a session (``api.sessions``): the HttpOnly, SameSite=Strict cookie
holds a random session id, never the token. Sign-in attempts are rate limited
per client. Pages need a ``read`` session; actions need ``operate``, carry the
session's CSRF token, and are refused from another origin; they are audited
exactly like the API's (actor = the token's name, the client IP).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bookingguard.api.auth import client_ip
from bookingguard.api.bounds import MAX_BIGINT, NO_NUL, is_blank
from bookingguard.api.context import OperatorContext, operator_context
from bookingguard.api.dashboard import charts, queries
from bookingguard.api.sessions import (
    SESSION_COOKIE,
    SignedIn,
    csrf_matches,
    end_session,
    find_session,
    login_principal,
    open_session,
)
from bookingguard.db.uow import UnitOfWork
from bookingguard.errors import BookingGuardError
from bookingguard.review import queue

__all__ = ["REFRESH_SECONDS", "STATIC_DIRECTORY", "STATIC_URL", "login_url", "router"]

REFRESH_SECONDS = 30
#: The dashboard's stylesheet and script (no inline ones: the CSP forbids them).
STATIC_URL = "/static/dashboard"
STATIC_DIRECTORY = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)

Context = Annotated[OperatorContext, Depends(operator_context)]
#: The session's CSRF token, carried by every dashboard form.
CsrfField = Annotated[str, Form(max_length=100)]
#: A row id in a path: a BIGINT.
RowId = Annotated[int, PathParam(ge=1, le=MAX_BIGINT)]


@cache
def _templates() -> Jinja2Templates:
    return Jinja2Templates(directory=Path(__file__).parent / "templates")


def login_url(base_url: str, secret: str) -> str:
    """The URL ``serve`` prints: opening it signs the browser in (as Jupyter does)."""
    return f"{base_url.rstrip('/')}/login?{urlencode({'token': secret})}"


def _login_page(request: Request, message: str, *, status_code: int = 401) -> Response:
    return _templates().TemplateResponse(
        request, "login.html", {"message": message}, status_code=status_code
    )


def _signed_in(request: Request, context: OperatorContext) -> SignedIn | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    return find_session(context, session_id) if session_id else None


def _render(
    request: Request,
    context: OperatorContext,
    signed_in: SignedIn,
    template: str,
    *,
    active: str,
    title: str,
    **data: Any,
) -> Response:
    return _templates().TemplateResponse(
        request,
        template,
        {
            "principal": signed_in.principal,
            "csrf_token": signed_in.csrf_token,
            "now": context.clock(),
            "active": active,
            "title": title,
            "refresh_seconds": REFRESH_SECONDS,
            "flash": request.query_params.get("msg"),
            "flash_error": request.query_params.get("error") == "1",
            **data,
        },
    )


def _sign_in(request: Request, context: OperatorContext, token: str) -> Response:
    limiter = context.login_limiter
    if limiter is not None and not (decision := limiter.hit(f"ip:{client_ip(request)}")).allowed:
        response = _login_page(
            request,
            f"Too many sign-in attempts; try again in {decision.retry_after} s.",
            status_code=429,
        )
        response.headers["Retry-After"] = str(decision.retry_after)
        return response
    found = login_principal(context, token) if token else None
    if found is None:
        message = "That token is unknown or revoked." if token else "A token is required."
        return _login_page(request, message)
    principal, one_time = found
    session_id = open_session(context, principal, one_time_secret=token if one_time else None)
    if session_id is None:
        return _login_page(request, "That login link was used already; each signs in once.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=context.settings.api.session_ttl_seconds,
    )
    return response


@router.get("/login")
def login(
    request: Request, context: Context, token: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    """Exchange the token for a session and go to the overview; without one, the sign-in form."""
    if not token:
        return _login_page(request, "Sign in with a token.", status_code=200)
    return _sign_in(request, context, token)


@router.post("/login")
def login_form(
    request: Request, context: Context, token: Annotated[str, Form(max_length=500)] = ""
) -> Response:
    """The sign-in form: the token in the body, not the URL."""
    return _sign_in(request, context, token)


@router.post("/logout")
def logout(
    request: Request, context: Context, csrf_token: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    """End the session (its CSRF token proves the form is ours) and forget the cookie."""
    session_id = request.cookies.get(SESSION_COOKIE)
    signed_in = find_session(context, session_id) if session_id else None
    if session_id and signed_in is not None and csrf_matches(signed_in, csrf_token):
        end_session(context, session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def overview_page(request: Request, context: Context) -> Response:
    """Consistency today and over 14 days, open alerts, auto-corrections, review queue size."""
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in to see the dashboard.")
    with UnitOfWork(context.sessions) as uow:
        data = queries.overview(uow.session, now=context.clock())
    return _render(
        request,
        context,
        signed_in,
        "overview.html",
        active="/",
        title="overview",
        data=data,
        chart=charts.trend_chart(data.trend),
    )


@router.get("/alerts")
def alerts_page(
    request: Request,
    context: Context,
    status: Annotated[str, Query(max_length=20, pattern=NO_NUL)] = "",
    severity: Annotated[str, Query(max_length=20, pattern=NO_NUL)] = "",
    alert_type: Annotated[str, Query(alias="type", max_length=64, pattern=NO_NUL)] = "",
) -> Response:
    """Alerts, most severe and newest first, with filters."""
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in to see the alerts.")
    with UnitOfWork(context.sessions) as uow:
        rows = queries.alerts(
            uow.session,
            status=status or None,
            severity=severity or None,
            alert_type=alert_type or None,
        )
    filters = {"status": status, "severity": severity, "type": alert_type}
    return _render(
        request,
        context,
        signed_in,
        "alerts.html",
        active="/alerts",
        title="alerts",
        alerts=rows,
        filters=filters,
        can_act=context.alert_actions is not None and signed_in.principal.allows("operate"),
    )


def _alert_action(
    request: Request, context: OperatorContext, alert_id: int, action: str, csrf_token: str
) -> Response:
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in again to act on alerts.")
    refusal = _refusal(request, signed_in, csrf_token)
    if refusal or context.alert_actions is None:
        return _back("/alerts", refusal or "Alert actions are not available here.", error=True)
    actions = context.alert_actions
    act = actions.acknowledge if action == "acknowledge" else actions.resolve
    try:
        with UnitOfWork(context.sessions) as uow:
            act(uow.session, alert_id, by=signed_in.principal.name, now=context.clock())
            uow.commit()
    except BookingGuardError as exc:
        return _back("/alerts", exc.message, error=True)
    done = "acknowledged" if action == "acknowledge" else "resolved"
    return _back("/alerts", f"Alert {alert_id} {done} by {signed_in.principal.name}.")


@router.post("/alerts/{alert_id}/ack")
def acknowledge_from_dashboard(
    request: Request, context: Context, alert_id: RowId, csrf_token: CsrfField = ""
) -> Response:
    """Acknowledge an alert as the signed-in token."""
    return _alert_action(request, context, alert_id, "acknowledge", csrf_token)


@router.post("/alerts/{alert_id}/resolve")
def resolve_alert_from_dashboard(
    request: Request, context: Context, alert_id: RowId, csrf_token: CsrfField = ""
) -> Response:
    """Resolve an alert as the signed-in token."""
    return _alert_action(request, context, alert_id, "resolve", csrf_token)


@router.get("/review")
def review_page(request: Request, context: Context) -> Response:
    """Open review items with claim, resolve and dismiss (operate tokens)."""
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in to see the review queue.")
    with UnitOfWork(context.sessions) as uow:
        page = queue.list_items(uow.session, statuses=queue.OPEN_STATUSES, limit=200)
    return _render(
        request,
        context,
        signed_in,
        "review.html",
        active="/review",
        title="review queue",
        items=page.items,
        can_operate=signed_in.principal.allows("operate"),
    )


def _back(page: str, message: str, *, error: bool = False) -> Response:
    query = {"msg": message, **({"error": "1"} if error else {})}
    return RedirectResponse(f"{page}?{urlencode(query)}", status_code=303)


def _refusal(request: Request, signed_in: SignedIn, csrf_token: str) -> str | None:
    """Why a dashboard form post is refused (another site's form, a read-only token), if it is.

    The form must carry the session's CSRF token; an ``Origin``, when sent, must be
    this service's, scheme included (a browser always sends one on a cross-site post).
    """
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        return "Refused: the form came from another site."
    if not csrf_matches(signed_in, csrf_token):
        return "Refused: the form is not from this dashboard session; reload the page."
    if not signed_in.principal.allows("operate"):
        return f"Token {signed_in.principal.name!r} can only read."
    return None


def _own_origin(request: Request) -> str:
    host = request.headers.get("host") or urlsplit(str(request.url)).netloc
    return f"{request.url.scheme}://{host}"


def _review_action(
    request: Request,
    context: OperatorContext,
    item_id: int,
    action: str,
    note: str,
    csrf_token: str,
) -> Response:
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in again to act on the review queue.")
    refusal = _refusal(request, signed_in, csrf_token)
    if refusal:
        return _back("/review", refusal, error=True)
    try:
        with UnitOfWork(context.sessions) as uow:
            now = context.clock()
            ip = client_ip(request)
            if action == "claim":
                queue.claim(uow.session, item_id, actor=signed_in.principal.name, now=now, ip=ip)
            else:
                close = queue.dismiss if action == "dismiss" else queue.resolve
                close(
                    uow.session, item_id, actor=signed_in.principal.name, note=note, now=now, ip=ip
                )
            uow.commit()
    except queue.ReviewError as exc:
        return _back("/review", exc.message, error=True)
    done = {"claim": "claimed", "resolve": "resolved", "dismiss": "dismissed"}[action]
    return _back("/review", f"Item {item_id} {done} by {signed_in.principal.name}.")


@router.post("/review/{item_id}/claim")
def claim_from_dashboard(
    request: Request, context: Context, item_id: RowId, csrf_token: CsrfField = ""
) -> Response:
    """Claim an item for the signed-in token; audited."""
    return _review_action(request, context, item_id, "claim", "", csrf_token)


@router.post("/review/{item_id}/resolve")
def resolve_from_dashboard(
    request: Request,
    context: Context,
    item_id: RowId,
    note: Annotated[str, Form(max_length=5000, pattern=NO_NUL)] = "",
    action: Annotated[str, Form(pattern="^(resolve|dismiss)$")] = "resolve",
    csrf_token: CsrfField = "",
) -> Response:
    """Resolve or dismiss an item with the note typed in the form; audited.

    A note that shows nothing (white space, zero-width characters) is no note.
    """
    return _review_action(
        request, context, item_id, action, "" if is_blank(note) else note, csrf_token
    )


@router.get("/breakers")
def breakers_page(request: Request, context: Context) -> Response:
    """Circuit states, counts and transitions over the last 14 days."""
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in to see the circuit breakers.")
    with UnitOfWork(context.sessions) as uow:
        views = queries.breakers(uow.session, now=context.clock())
    return _render(
        request,
        context,
        signed_in,
        "breakers.html",
        active="/breakers",
        title="circuit breakers",
        views=views,
        failure_rates=queries.circuit_failure_rates(context.registry),
    )


@router.get("/validation")
def validation_page(request: Request, context: Context) -> Response:
    """Validation latency quantiles, failures by reason, rollbacks and retries."""
    signed_in = _signed_in(request, context)
    if signed_in is None:
        return _login_page(request, "Sign in to see validation.")
    with UnitOfWork(context.sessions) as uow:
        data = queries.validation(uow.session, context.registry, now=context.clock())
    return _render(
        request,
        context,
        signed_in,
        "validation.html",
        active="/validation",
        title="validation",
        data=data,
    )
