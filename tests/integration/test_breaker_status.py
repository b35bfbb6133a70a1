"""The API and the dashboard show an open circuit past its cooldown as awaiting its probe."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from bookingguard.api.dashboard.routes import login_url
from bookingguard.api.server import build_server_app
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import NOW, make_token, running_server
from tests.support.circuits import KEY, seed_open_circuit


class Clock:
    """The app's now, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> object:
        return self.now


def _cell(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{re.escape(testid)}">([^<]*)<', html)
    assert found is not None, testid
    return found.group(1)


def test_api_and_dashboard_follow_the_clock(database: TestDatabase) -> None:
    """During the cooldown: open until its end; after it: "open, next call probes", no time."""
    seed_open_circuit(database, opened_at=NOW, cooldown=timedelta(seconds=30))
    secret = make_token(database, "viewer", "read")
    clock = Clock()
    app = build_server_app(Settings(database_url=database.url), engine=database.engine)
    app.state.operator.clock = clock
    with (
        running_server(app) as base_url,
        httpx.Client(base_url=base_url, follow_redirects=True) as client,
    ):
        client.get(login_url(base_url, secret))
        headers = {"Authorization": f"Bearer {secret}"}

        clock.now = NOW + timedelta(seconds=10)
        shown = client.get(f"/api/v1/circuit-breakers/{KEY}", headers=headers).json()
        assert (shown["state"], shown["status"], shown["awaiting_probe"]) == ("open", "open", False)
        assert shown["open_until"] == (NOW + timedelta(seconds=30)).isoformat().replace(
            "+00:00", "Z"
        )
        page = client.get("/breakers").text
        assert _cell(page, f"state-{KEY}") == "open"
        assert _cell(page, f"open-until-{KEY}") == "12:00:30"

        clock.now = NOW + timedelta(minutes=5)
        listed = client.get("/api/v1/circuit-breakers", headers=headers).json()
        shown = client.get(f"/api/v1/circuit-breakers/{KEY}", headers=headers).json()
        for circuit in (listed[0], shown):
            assert circuit["state"] == "open"
            assert circuit["status"] == "open, next call probes"
            assert circuit["awaiting_probe"] is True
            assert circuit["open_until"] is None
        page = client.get("/breakers").text
        assert _cell(page, f"state-{KEY}") == "open, next call probes"
        assert _cell(page, f"open-until-{KEY}") == ""
