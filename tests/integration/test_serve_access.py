"""What serve does before it listens: one-time login URL on loopback, refusal elsewhere."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from bookingguard.api.access import plan_access
from bookingguard.api.operator import install_operator_surface
from bookingguard.errors import ConfigurationError
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import make_token, running_server

PUBLIC_HOST = "0.0.0.0"  # noqa: S104 (only planned, never bound)


def test_no_token_gives_a_working_one_time_login_url(database: TestDatabase) -> None:
    """With no token, a login URL is made; opening it signs the browser in to the dashboard."""
    settings = Settings(database_url=database.url)
    access = plan_access(settings, database.engine, host="127.0.0.1", port=8000)
    assert access.login_url is not None
    assert access.login_url.startswith("http://127.0.0.1:8000/login?token=bg_")
    app = FastAPI()
    install_operator_surface(
        app, settings, engine=database.engine, extra_tokens=access.extra_tokens
    )
    with running_server(app) as base_url, httpx.Client(follow_redirects=True) as client:
        path = access.login_url.removeprefix("http://127.0.0.1:8000")
        response = client.get(base_url + path)
        assert response.status_code == 200
        assert "signed in as dashboard-login (operate)" in response.text
        assert client.get(base_url + "/api/v1/review-queue").status_code == 401


def test_public_bind_without_token_is_refused(database: TestDatabase) -> None:
    """Binding 0.0.0.0 with no token is a configuration error naming api.host."""
    settings = Settings(database_url=database.url)
    with pytest.raises(ConfigurationError) as caught:
        plan_access(settings, database.engine, host=PUBLIC_HOST, port=8000)
    assert caught.value.key == "api.host"
    assert "token create" in caught.value.message


def test_existing_token_needs_no_login_token(database: TestDatabase) -> None:
    """Once a token exists, serve makes no login token and may bind any address."""
    make_token(database, "ops", "operate")
    settings = Settings(database_url=database.url)
    access = plan_access(settings, database.engine, host=PUBLIC_HOST, port=8000)
    assert access.login_url is None
    assert access.extra_tokens == []
