"""Finding 8: the login link signs in once, for a revocable, expiring server-side session;
sign-in attempts are rate limited; every response carries the security headers."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bookingguard.api.access import login_token
from bookingguard.api.dashboard.routes import login_url
from bookingguard.api.operator import install_operator_surface
from bookingguard.api.sessions import SESSION_COOKIE
from bookingguard.db.models import DashboardSession
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from bookingguard.tokens import revoke_token
from tests.conftest import TestDatabase
from tests.integration.edge.conftest import Edge
from tests.operator_support import NOW, csrf_token_of, make_token, running_server

ONE_TIME = "bg_one_time_login_secret_0123456789"


def dashboard_app(database: TestDatabase, **api: object) -> FastAPI:
    app = FastAPI()
    install_operator_surface(
        app,
        Settings(database_url=database.url, api=api),
        engine=database.engine,
        extra_tokens=[login_token(ONE_TIME)],
    )
    app.state.operator.clock = lambda: NOW
    return app


def test_login_link_signs_in_once_with_a_session_cookie(database: TestDatabase) -> None:
    """The link gives a cookie holding a session id (not the token); a second use is refused."""
    with running_server(dashboard_app(database)) as base_url:
        with httpx.Client() as first:
            answer = first.get(login_url(base_url, ONE_TIME))
            assert answer.status_code == 303
            cookie = first.cookies[SESSION_COOKIE]
            assert ONE_TIME not in answer.headers["set-cookie"]
            assert "httponly" in answer.headers["set-cookie"].lower()
            assert "samesite=strict" in answer.headers["set-cookie"].lower()
            assert first.get(base_url + "/").status_code == 200
        with httpx.Client() as second:
            again = second.get(login_url(base_url, ONE_TIME))
        bearer = httpx.get(
            base_url + "/api/v1/review-queue", headers={"Authorization": f"Bearer {ONE_TIME}"}
        )
    assert again.status_code == 401
    assert "used already" in again.text
    assert bearer.status_code == 401, "the login token is no API token"
    with UnitOfWork(database.sessions) as uow:
        stored = uow.session.scalars(select(DashboardSession.session_hash)).all()
    assert len(stored) == 1
    assert cookie not in stored


def test_post_login_and_post_logout_revokes_the_session(database: TestDatabase) -> None:
    """POST /login takes the token from a form; POST /logout with the CSRF token ends it."""
    secret = make_token(database, "ops", "operate")
    with running_server(dashboard_app(database)) as base_url, httpx.Client() as browser:
        assert browser.get(base_url + "/logout").status_code == 405
        signed = browser.post(base_url + "/login", data={"token": secret})
        assert signed.status_code == 303
        cookie = browser.cookies[SESSION_COOKIE]
        csrf = csrf_token_of(browser.get(base_url + "/").text)
        # Without the CSRF token a log-out (e.g. forced by another site) ends nothing.
        browser.post(base_url + "/logout")
        browser.cookies.set(SESSION_COOKIE, cookie)
        assert browser.get(base_url + "/").status_code == 200
        browser.post(base_url + "/logout", data={"csrf_token": csrf})
        browser.cookies.set(SESSION_COOKIE, cookie)
        after = browser.get(base_url + "/")
    assert after.status_code == 401


def test_session_expires_and_ends_with_its_token(database: TestDatabase) -> None:
    """A session past api.session_ttl_seconds, or whose API token is revoked, signs in no more."""
    secret = make_token(database, "ops", "operate")
    app = dashboard_app(database, session_ttl_seconds=60)
    context = app.state.operator
    with running_server(app) as base_url, httpx.Client(base_url=base_url) as browser:
        browser.get(login_url(base_url, secret))
        assert browser.get("/").status_code == 200
        context.clock = lambda: NOW + timedelta(seconds=61)
        assert browser.get("/").status_code == 401
        context.clock = lambda: NOW
        assert browser.get("/").status_code == 200
        with UnitOfWork(database.sessions) as uow:
            revoke_token(uow.session, name="ops", now=NOW)
            uow.commit()
        assert browser.get("/").status_code == 401


def test_login_attempts_are_rate_limited_per_client(database: TestDatabase) -> None:
    """Past api.login_rate_limit, /login answers 429 with Retry-After, even for a good token."""
    secret = make_token(database, "ops", "operate")
    with running_server(dashboard_app(database, login_rate_limit="3/minute")) as base_url:
        wrong = [httpx.get(login_url(base_url, f"bg_guess_{n}")).status_code for n in range(3)]
        limited = httpx.post(base_url + "/login", data={"token": secret})
    assert wrong == [401, 401, 401]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "path",
    ["/login", "/", "/api/v1/alerts", "/healthz", "/static/dashboard/dashboard.css", "/nowhere"],
)
async def test_every_response_has_the_security_headers(edge: Edge, path: str) -> None:
    """CSP without inline script, no framing, no sniffing, no referrer, on every response."""
    response = await edge.http.get(path)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_webhook_and_413_answers_have_the_security_headers(edge: Edge) -> None:
    """Refusals too: an unsigned webhook (401) and an oversized body (413)."""
    for response in (
        await edge.http.post("/webhooks/retell", content=b"{}"),
        await edge.http.post("/api/v1/silences", content=b" " * (65 * 1024)),
    ):
        assert response.status_code in (401, 413)
        assert response.headers["x-frame-options"] == "DENY"


def test_dashboard_pages_have_no_inline_script_or_style(database: TestDatabase) -> None:
    """The pages load their script and style from /static: the CSP can forbid inline ones."""
    secret = make_token(database, "ops", "operate")
    with running_server(dashboard_app(database)) as base_url, httpx.Client() as browser:
        pages = [browser.get(base_url + "/login").text]
        browser.get(login_url(base_url, secret))
        pages += [browser.get(base_url + path).text for path in ("/", "/alerts", "/review")]
        script = browser.get(base_url + "/static/dashboard/dashboard.js")
    assert script.status_code == 200
    for page in pages:
        assert re.search(r"<script>|<script [^>]*>[^<]", page) is None
        assert "<style" not in page
        assert " style=" not in page
