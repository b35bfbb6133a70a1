"""Finding 3: without Redis or a notification channel the service is degraded, not down;
without its database it is unavailable, and the API says so with a 503 problem."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bookingguard.api.server import build_server_app
from bookingguard.bootstrap import build_engine
from bookingguard.db.models import Call, NotificationOutbox
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from tests.conftest import POSTGRES_URL, TestDatabase
from tests.operator_support import running_server
from tests.support.cli import run_cli

TOKEN = "ops:operate:edge-test-token-0123456789"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def unreachable_database_url(dialect: str, tmp_path: Path) -> str:
    if dialect == "postgresql":
        return POSTGRES_URL.replace("127.0.0.1:5432", f"127.0.0.1:{closed_port()}")
    return f"sqlite:///{tmp_path / 'no-such-directory' / 'bookingguard.db'}"


def serve(settings: Settings) -> Iterator[httpx.Client]:
    engine = build_engine(settings)
    try:
        with (
            running_server(build_server_app(settings, engine=engine)) as base_url,
            httpx.Client(
                base_url=base_url,
                headers={"Authorization": f"Bearer {TOKEN.rsplit(':', 1)[1]}"},
                timeout=20,
            ) as client,
        ):
            yield client
    finally:
        engine.dispose()


def test_readyz_is_degraded_not_down_when_only_redis_is_down(database: TestDatabase) -> None:
    """Redis on a closed port: /readyz is 200 degraded naming redis, and the API still answers."""
    settings = Settings(
        database_url=database.url,
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        api={"tokens": [TOKEN]},
    )
    for client in serve(settings):
        ready = client.get("/readyz")
        alerts = client.get("/api/v1/alerts")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")
    assert alerts.status_code == 200


def test_check_runs_on_the_database_leases_when_redis_is_down(
    database: TestDatabase, tmp_path: Path
) -> None:
    """Redis on a closed port: ``bookingguard check`` still runs, under the database's
    lease (or this host's lock file), finds what is there and notifies."""
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(
            Call(retell_call_id="call_failed", booking_failed=True, booking_failure_reason="x")
        )
        uow.commit()
    result = run_cli(
        "check",
        "--json",
        env={
            "BOOKINGGUARD_DATABASE_URL": database.url,
            "BOOKINGGUARD_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
            "BOOKINGGUARD_SPOOL__PATH": str(tmp_path / "spool.db"),
            "BOOKINGGUARD_MONITORING__LOCK_DIR": str(tmp_path / "locks"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert findings["recent_failures"]["count"] == 1


def test_readyz_is_degraded_while_a_notification_channel_fails(database: TestDatabase) -> None:
    """A Slack message being retried makes /readyz 200 degraded, naming the channel."""
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(
            NotificationOutbox(
                channel="slack", kind="alert", subject="s", payload={}, attempts=2, last_error="503"
            )
        )
        uow.commit()
    for client in serve(Settings(database_url=database.url, api={"tokens": [TOKEN]})):
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["notifications"] == "retrying 1 on slack"


def test_readyz_is_ok_when_everything_answers(database: TestDatabase, redis_url: str) -> None:
    """Database at head and Redis answering: 200 {"status": "ok"} with every check ok."""
    settings = Settings(database_url=database.url, redis_url=redis_url)
    for client in serve(settings):
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "notifications": "ok", "spool": "ok", "redis": "ok"},
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_unreachable_database_is_503_on_readyz_and_the_api(dialect: str, tmp_path: Path) -> None:
    """No database: /readyz is 503 unavailable; /api/v1 is a 503 problem with Retry-After."""
    settings = Settings(
        database_url=unreachable_database_url(dialect, tmp_path), api={"tokens": [TOKEN]}
    )
    for client in serve(settings):
        ready = client.get("/readyz")
        alerts = client.get("/api/v1/alerts")
        review = client.get("/api/v1/review-queue")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"].startswith("unreachable")
    for response in (alerts, review):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "5"
        assert response.json()["detail"] == "the database is unavailable; retry later"
