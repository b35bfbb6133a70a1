"""Dashboard routes: a one-time login URL sets a cookie, then server-rendered pages.

``/login?token=…`` checks the token and keeps it in an HttpOnly, SameSite=Strict
cookie (as Jupyter does with its token URL); ``serve`` prints that URL. Pages
need a ``read`` token; review actions need ``operate`` and are audited exactly
like the API's (actor = the token's name, the client IP).
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

from bookingguard.api.auth import SESSION_COOKIE, client_ip, principal_for_secret
from bookingguard.api.bounds import MAX_BIGINT, NO_NUL, is_blank
from bookingguard.api.context import OperatorContext, operator_context
from bookingguard.api.dashboard import charts, queries
from bookingguard.db.uow import UnitOfWork
from bookingguard.errors import BookingGuardError
from bookingguard.review import queue
from bookingguard.tokens import Principal

__all__ = ["REFRESH_SECONDS", "login_url", "router"]

REFRESH_SECONDS = 30

router = APIRouter(include_in_schema=False)

Context = Annotated[OperatorContext, Depends(operator_context)]
#: A row id in a path: a BIGINT.
RowId = Annotated[int, PathParam(ge=1, le=MAX_BIGINT)]


@cache
def _templates() -> Jinja2Templates:
    return Jinja2Templates(directory=Path(__file__).parent / "templates")


def login_url(base_url: str, secret: str) -> str:
    """The URL ``serve`` prints: opening it sets the dashboard cookie (as Jupyter does)."""
    return f"{base_url.rstrip('/')}/login?{urlencode({'token': secret})}"


def _login_page(request: Request, message: str) -> Response:
    return _templates().TemplateResponse(
        request, "login.html", {"message": message}, status_code=401
    )


def _signed_in(request: Request, context: OperatorContext) -> Principal | None:
    secret = request.cookies.get(SESSION_COOKIE)
    return principal_for_secret(context, secret) if secret else None


def _render(
    request: Request,
    context: OperatorContext,
    principal: Principal,
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
            "principal": principal,
            "now": context.clock(),
            "active": active,
            "title": title,
            "refresh_seconds": REFRESH_SECONDS,
            "flash": request.query_params.get("msg"),
            "flash_error": request.query_params.get("error") == "1",
            **data,
        },
    )


@router.get("/login")
def login(
    request: Request, context: Context, token: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    """Check the token, keep it in an HttpOnly cookie and go to the overview."""
    principal = principal_for_secret(context, token) if token else None
    if principal is None:
        message = "That token is unknown or revoked." if token else "A token is required."
        return _login_page(request, message)
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


@router.get("/")
def overview_page(request: Request, context: Context) -> Response:
    """Consistency today and over 14 days, open alerts, auto-corrections, review queue size."""
    principal = _signed_in(request, context)
    if principal is None:
        return _login_page(request, "Sign in to see the dashboard.")
    with UnitOfWork(context.sessions) as uow:
        data = queries.overview(uow.session, now=context.clock())
    return _render(
        request,
        context,
        principal,
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
    principal = _signed_in(request, context)
    if principal is None:
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
        principal,
        "alerts.html",
        active="/alerts",
        title="alerts",
        alerts=rows,
        filters=filters,
        can_act=context.alert_actions is not None and principal.allows("operate"),
    )


def _alert_action(
    request: Request, context: OperatorContext, alert_id: int, action: str
) -> Response:
    principal = _signed_in(request, context)
    if principal is None:
        return _login_page(request, "Sign in again to act on alerts.")
    refusal = _refusal(request, principal)
    if refusal or context.alert_actions is None:
        return _back("/alerts", refusal or "Alert actions are not available here.", error=True)
    actions = context.alert_actions
    act = actions.acknowledge if action == "acknowledge" else actions.resolve
    try:
        with UnitOfWork(context.sessions) as uow:
            act(uow.session, alert_id, by=principal.name, now=context.clock())
            uow.commit()
    except BookingGuardError as exc:
        return _back("/alerts", exc.message, error=True)
    done = "acknowledged" if action == "acknowledge" else "resolved"
    return _back("/alerts", f"Alert {alert_id} {done} by {principal.name}.")


@router.post("/alerts/{alert_id}/ack")
def acknowledge_from_dashboard(request: Request, context: Context, alert_id: RowId) -> Response:
    """Acknowledge an alert as the signed-in token."""
    return _alert_action(request, context, alert_id, "acknowledge")


@router.post("/alerts/{alert_id}/resolve")
def resolve_alert_from_dashboard(request: Request, context: Context, alert_id: RowId) -> Response:
    """Resolve an alert as the signed-in token."""
    return _alert_action(request, context, alert_id, "resolve")


@router.get("/review")
def review_page(request: Request, context: Context) -> Response:
    """Open review items with claim, resolve and dismiss (operate tokens)."""
    principal = _signed_in(request, context)
    if principal is None:
        return _login_page(request, "Sign in to see the review queue.")
    with UnitOfWork(context.sessions) as uow:
        page = queue.list_items(uow.session, statuses=queue.OPEN_STATUSES, limit=200)
    return _render(
        request,
        context,
        principal,
        "review.html",
        active="/review",
        title="review queue",
        items=page.items,
        can_operate=principal.allows("operate"),
    )


def _back(page: str, message: str, *, error: bool = False) -> Response:
    query = {"msg": message, **({"error": "1"} if error else {})}
    return RedirectResponse(f"{page}?{urlencode(query)}", status_code=303)


def _refusal(request: Request, principal: Principal) -> str | None:
    """Why a dashboard form post is refused (another site's form, a read-only token), if it is."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return "Refused: the form came from another site."
    if not principal.allows("operate"):
        return f"Token {principal.name!r} can only read."
    return None


def _review_action(
    request: Request, context: OperatorContext, item_id: int, action: str, note: str
) -> Response:
    principal = _signed_in(request, context)
    if principal is None:
        return _login_page(request, "Sign in again to act on the review queue.")
    refusal = _refusal(request, principal)
    if refusal:
        return _back("/review", refusal, error=True)
    try:
        with UnitOfWork(context.sessions) as uow:
            now = context.clock()
            ip = client_ip(request)
            if action == "claim":
                queue.claim(uow.session, item_id, actor=principal.name, now=now, ip=ip)
            else:
                close = queue.dismiss if action == "dismiss" else queue.resolve
                close(uow.session, item_id, actor=principal.name, note=note, now=now, ip=ip)
            uow.commit()
    except queue.ReviewError as exc:
        return _back("/review", exc.message, error=True)
    done = {"claim": "claimed", "resolve": "resolved", "dismiss": "dismissed"}[action]
    return _back("/review", f"Item {item_id} {done} by {principal.name}.")


@router.post("/review/{item_id}/claim")
def claim_from_dashboard(request: Request, context: Context, item_id: RowId) -> Response:
    """Claim an item for the signed-in token; audited."""
    return _review_action(request, context, item_id, "claim", "")


@router.post("/review/{item_id}/resolve")
def resolve_from_dashboard(
    request: Request,
    context: Context,
    item_id: RowId,
    note: Annotated[str, Form(max_length=5000, pattern=NO_NUL)] = "",
    action: Annotated[str, Form(pattern="^(resolve|dismiss)$")] = "resolve",
) -> Response:
    """Resolve or dismiss an item with the note typed in the form; audited.

    A note that shows nothing (white space, zero-width characters) is no note.
    """
    return _review_action(request, context, item_id, action, "" if is_blank(note) else note)


@router.get("/breakers")
def breakers_page(request: Request, context: Context) -> Response:
    """Circuit states, counts and transitions over the last 14 days."""
    principal = _signed_in(request, context)
    if principal is None:
        return _login_page(request, "Sign in to see the circuit breakers.")
    with UnitOfWork(context.sessions) as uow:
        views = queries.breakers(uow.session, now=context.clock())
    return _render(
        request,
        context,
        principal,
        "breakers.html",
        active="/breakers",
        title="circuit breakers",
        views=views,
        failure_rates=queries.circuit_failure_rates(context.registry),
    )


@router.get("/validation")
def validation_page(request: Request, context: Context) -> Response:
    """Validation latency quantiles, failures by reason, rollbacks and retries."""
    principal = _signed_in(request, context)
    if principal is None:
        return _login_page(request, "Sign in to see validation.")
    with UnitOfWork(context.sessions) as uow:
        data = queries.validation(uow.session, context.registry, now=context.clock())
    return _render(
        request,
        context,
        principal,
        "validation.html",
        active="/validation",
        title="validation",
        data=data,
    )
