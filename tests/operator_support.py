"""Helpers for the operator-surface tests: a real uvicorn server on 127.0.0.1 and seed data."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session

from bookingguard.api.context import AlertActions
from bookingguard.api.operator import install_operator_surface
from bookingguard.api.ratelimit import RateLimiter
from bookingguard.db.models import Call, ConsistencyAlert, ManualReviewItem
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from bookingguard.tokens import create_token
from tests.conftest import TestDatabase

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on an ephemeral loopback port; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def operator_app(
    database: TestDatabase,
    *,
    settings: Settings | None = None,
    rate_limiter: RateLimiter | None = None,
    alert_actions: AlertActions | None = None,
) -> FastAPI:
    """A bare FastAPI app with only the operator surface installed."""
    app = FastAPI()
    install_operator_surface(
        app,
        settings or Settings(database_url=database.url),
        engine=database.engine,
        rate_limiter=rate_limiter,
        alert_actions=alert_actions,
    )
    return app


def csrf_token_of(page: str) -> str:
    """The CSRF token a dashboard page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def make_token(database: TestDatabase, name: str, scope: str) -> str:
    with UnitOfWork(database.sessions) as uow:
        secret = create_token(uow.session, name=name, scope=scope, now=NOW)
        uow.commit()
    return secret


def seed_review_items(database: TestDatabase, specs: list[tuple[int, int]]) -> list[int]:
    """One call and one pending item per (priority, age in minutes); return item ids in order."""
    ids = []
    with UnitOfWork(database.sessions) as uow:
        for index, (priority, age) in enumerate(specs):
            call = Call(retell_call_id=f"seed-{index}", appointment_made=False)
            uow.session.add(call)
            uow.session.flush()
            created = NOW - timedelta(minutes=age)
            item = ManualReviewItem(
                call_id=call.id,
                reason="missing_appointment",
                priority=priority,
                status="pending",
                context={"reasons": ["missing_appointment"]},
                created_at=created,
                updated_at=created,
            )
            uow.session.add(item)
            uow.session.flush()
            ids.append(item.id)
        uow.commit()
    return ids


class RecordingAlertActions:
    """Acknowledge/resolve with the monitor's semantics, for tests of the dashboard seam."""

    def acknowledge(self, session: Session, alert_id: int, *, by: str, now: datetime) -> object:
        alert = session.get_one(ConsistencyAlert, alert_id)
        alert.status, alert.acknowledged_by, alert.acknowledged_at = "acknowledged", by, now
        session.flush()
        return alert

    def resolve(self, session: Session, alert_id: int, *, by: str, now: datetime) -> object:
        alert = session.get_one(ConsistencyAlert, alert_id)
        alert.status, alert.resolved_at = "resolved", now
        session.flush()
        return alert
