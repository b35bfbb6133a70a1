"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

Screenshots of every page are kept under ``artifacts/`` as test artifacts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import exists, func, select

from bookingguard.api.dashboard.routes import login_url
from bookingguard.db.alerts import record_alert
from bookingguard.db.models import Appointment, Call, ConsistencyAlert, ReviewAuditLog
from bookingguard.db.uow import UnitOfWork
from bookingguard.demo import load_demo
from bookingguard.review import file_for_review
from tests.conftest import TestDatabase, service_unavailable
from tests.operator_support import (
    NOW,
    RecordingAlertActions,
    make_token,
    operator_app,
    running_server,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        service_unavailable("Chromium", f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _seed(database: TestDatabase) -> list[int]:
    """Demo data, then what a check run would add: alerts and review items for phantom calls."""
    load_demo(database.engine, now=NOW, seed=11, days=14, calls_per_day=20)
    item_ids = []
    with UnitOfWork(database.sessions) as uow:
        has_appointment = exists().where(Appointment.call_id == Call.id)
        phantoms = uow.session.scalars(
            select(Call).where(Call.appointment_made.is_(True), ~has_appointment).order_by(Call.id)
        ).all()
        for call in phantoms:
            record_alert(
                uow.session,
                alert_type="missing_appointment",
                entity_type="call",
                entity_id=call.id,
                description=f"Call {call.id} says booked but has no appointment",
                now=NOW - timedelta(minutes=5),
            )
            item = file_for_review(
                uow.session,
                call_id=call.id,
                reason="missing_appointment",
                priority=1,
                now=NOW - timedelta(minutes=5),
            )
            item_ids.append(item.id)
        uow.commit()
    return item_ids


def _expected_today_rate(database: TestDatabase) -> str:
    """Today's consistency rate computed independently: calls without a critical/warning alert."""
    start = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    with UnitOfWork(database.sessions) as uow:
        today = set(
            uow.session.scalars(
                select(Call.id).where(Call.created_at >= start, Call.created_at <= NOW)
            )
        )
        flagged = set(
            uow.session.scalars(
                select(ConsistencyAlert.entity_id).where(
                    ConsistencyAlert.entity_type == "call",
                    ConsistencyAlert.severity.in_(("critical", "warning")),
                )
            )
        )
    return f"{100 * (len(today) - len(today & flagged)) / len(today):.2f}%"


def _shot(page: Page, dialect: str, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{dialect}-{name}.png"), full_page=True)


def test_dashboard_pages_numbers_and_audited_resolve(
    database: TestDatabase, browser: Browser
) -> None:
    """Every page loads; overview numbers match the API and the DB; a resolve click is audited."""
    item_ids = _seed(database)
    assert len(item_ids) >= 2
    secret = make_token(database, "alice", "operate")
    app = operator_app(database, alert_actions=RecordingAlertActions())
    app.state.operator.clock = lambda: NOW
    with running_server(app) as base_url:
        api_items = httpx.get(
            f"{base_url}/api/v1/review-queue",
            params={"status": ["pending", "in_progress"], "limit": 200},
            headers={"Authorization": f"Bearer {secret}"},
        ).json()["items"]
        page = browser.new_page()
        try:
            page.goto(login_url(base_url, secret))
            expect(page.get_by_test_id("review-queue-size")).to_have_text(str(len(api_items)))
            with UnitOfWork(database.sessions) as uow:
                open_alerts = uow.session.scalar(
                    select(func.count())
                    .select_from(ConsistencyAlert)
                    .where(ConsistencyAlert.status.in_(("open", "acknowledged")))
                )
            expect(page.get_by_test_id("open-alerts")).to_have_text(str(open_alerts))
            expect(page.get_by_test_id("consistency-today")).to_have_text(
                _expected_today_rate(database)
            )
            assert page.locator("[data-testid=trend-chart] circle").count() == 14
            _shot(page, database.dialect, "overview")
            for name in ("alerts", "breakers", "validation"):
                response = page.goto(f"{base_url}/{name}")
                assert response is not None
                assert response.status == 200
                _shot(page, database.dialect, name)
                if name == "alerts":
                    expect(page.get_by_test_id("alert-count")).to_have_text(
                        f"{open_alerts} alerts shown"
                    )
                    page.locator("[data-testid^=ack-]").first.click()
                    expect(page.get_by_test_id("flash")).to_contain_text("acknowledged by alice")
                if name == "breakers":
                    # The demo opened it 4 minutes before NOW with a 30 s cooldown.
                    expect(
                        page.get_by_test_id("state-appointment_booking:event_type:1002")
                    ).to_have_text("open, next call probes")
                    expect(
                        page.get_by_test_id("open-until-appointment_booking:event_type:1002")
                    ).to_have_text("")

            page.goto(base_url + "/review")
            expect(page.get_by_test_id("review-count")).to_contain_text(f"{len(api_items)} open")
            first, second = item_ids[0], item_ids[1]
            page.get_by_test_id(f"claim-{second}").click()
            expect(page.get_by_test_id("flash")).to_have_text(f"Item {second} claimed by alice.")
            page.get_by_test_id(f"note-{first}").fill("Rebooked by phone; Cal.com uid abc123")
            page.get_by_test_id(f"resolve-{first}").click()
            expect(page.get_by_test_id("flash")).to_have_text(f"Item {first} resolved by alice.")
            expect(page.get_by_test_id(f"review-item-{first}")).to_have_count(0)
            _shot(page, database.dialect, "review")
        finally:
            page.close()
    with UnitOfWork(database.sessions) as uow:
        rows = uow.session.scalars(select(ReviewAuditLog).order_by(ReviewAuditLog.id)).all()
    assert [(row.review_item_id, row.actor, row.action, row.ip) for row in rows] == [
        (second, "alice", "claim", "127.0.0.1"),
        (first, "alice", "resolve", "127.0.0.1"),
    ]
    assert rows[1].details == {
        "from_status": "pending",
        "note": "Rebooked by phone; Cal.com uid abc123",
    }
    with UnitOfWork(database.sessions) as uow:
        acknowledged = uow.session.scalars(
            select(ConsistencyAlert.acknowledged_by).where(
                ConsistencyAlert.status == "acknowledged"
            )
        ).all()
    assert acknowledged == ["alice"]


def test_dashboard_needs_a_valid_token(database: TestDatabase, browser: Browser) -> None:
    """Without the cookie or with a revoked token the dashboard shows the sign-in page (401)."""
    with running_server(operator_app(database)) as base_url:
        page = browser.new_page()
        try:
            response = page.goto(base_url + "/")
            assert response is not None
            assert response.status == 401
            expect(page.locator("h1")).to_have_text("Not signed in")
            response = page.goto(login_url(base_url, "bg_wrong"))
            assert response is not None
            assert response.status == 401
        finally:
            page.close()
