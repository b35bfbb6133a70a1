"""The composed app's /api/v1 monitoring and breaker routes, /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bookingguard.api.server import build_server_app
from bookingguard.bootstrap import build_circuit_breaker, build_engine
from bookingguard.db.models import Call, ConsistencyAlert
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import NOW, make_token, running_server

KEY = "appointment_booking:event_type:42"


@pytest.fixture
def api(database: TestDatabase) -> Iterator[httpx.Client]:
    """A client of the composed app on a real server, signed in with an operate token."""
    token = make_token(database, "ops", "operate")
    settings = Settings(database_url=database.url, api={"rate_limit": "100000/minute"})
    app = build_server_app(settings, engine=database.engine)
    with (
        running_server(app) as base_url,
        httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        yield client


def seed_alerts(database: TestDatabase, severities: list[str]) -> list[int]:
    """One open alert per severity, one minute apart (oldest first); return their ids."""
    ids = []
    with UnitOfWork(database.sessions) as uow:
        for index, severity in enumerate(severities):
            alert = ConsistencyAlert(
                alert_type="missing_appointment" if severity == "critical" else "missing_direction",
                severity=severity,
                entity_type="call",
                entity_id=1000 + index,
                description="seeded",
                detected_at=NOW + timedelta(minutes=index),
                last_seen_at=NOW + timedelta(minutes=index),
                fingerprint=f"seed:{index}",
                status="open",
            )
            uow.session.add(alert)
            uow.session.flush()
            ids.append(alert.id)
        uow.commit()
    return ids


def test_run_now_returns_the_contract_document_and_becomes_latest(
    database: TestDatabase, api: httpx.Client
) -> None:
    """POST consistency/runs finds a phantom booking; GET consistency then shows that run."""
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(
            Call(
                retell_call_id="phantom-1",
                appointment_made=True,
                session_outcome="appointment_booked",
            )
        )
        uow.commit()
    response = api.post("/api/v1/consistency/runs", json={"scan_all": True, "notify": False})
    assert response.status_code == 200
    run = response.json()
    assert set(run) >= {"run_id", "window", "findings", "totals", "alerts_opened", "errors"}
    assert run["findings"]["missing_appointment"]["count"] == 1
    assert run["totals"]["critical"] >= 1
    latest = api.get("/api/v1/consistency").json()
    assert latest["latest_run"]["run_id"] == run["run_id"]
    assert latest["open_alerts"]["critical"] >= 1


def test_alerts_filter_and_paginate_with_a_cursor(
    database: TestDatabase, api: httpx.Client
) -> None:
    """Critical alerts come newest first, two per page, and the cursor reaches the last one."""
    ids = seed_alerts(database, ["critical", "warning", "critical", "critical", "info"])
    first = api.get("/api/v1/alerts", params={"severity": "critical", "limit": 2}).json()
    assert [a["id"] for a in first["items"]] == [ids[3], ids[2]]
    second = api.get(
        "/api/v1/alerts",
        params={"severity": "critical", "limit": 2, "cursor": first["next_cursor"]},
    ).json()
    assert [a["id"] for a in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None
    since = (NOW + timedelta(minutes=3)).isoformat()
    recent = api.get("/api/v1/alerts", params={"since": since}).json()
    assert [a["id"] for a in recent["items"]] == [ids[4], ids[3]]
    by_type = api.get("/api/v1/alerts", params={"type": "missing_direction"}).json()
    assert [a["id"] for a in by_type["items"]] == [ids[4], ids[1]]


def test_bad_alert_filters_get_422_with_a_message(api: httpx.Client) -> None:
    """An unknown severity or a malformed cursor is refused as problem+json, not ignored."""
    for params in ({"severity": "loud"}, {"cursor": "abc"}, {"status": "gone"}):
        response = api.get("/api/v1/alerts", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"]


def test_ack_and_resolve_change_the_alert_and_unknown_ids_get_404(
    database: TestDatabase, api: httpx.Client
) -> None:
    """Acknowledge records the token's name; resolve closes it; a missing id is 404."""
    (alert_id,) = seed_alerts(database, ["critical"])
    acked = api.post(f"/api/v1/alerts/{alert_id}/ack").json()
    assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", "ops")
    resolved = api.post(f"/api/v1/alerts/{alert_id}/resolve").json()
    assert resolved["status"] == "resolved"
    assert api.get("/api/v1/alerts", params={"status": "open"}).json()["items"] == []
    assert api.post("/api/v1/alerts/999999/ack").status_code == 404


def test_silences_are_created_by_the_token_and_need_a_matcher(api: httpx.Client) -> None:
    """A silence is listed with the token as author; one without any matcher is 422."""
    created = api.post(
        "/api/v1/silences",
        json={"comment": "maintenance", "duration_minutes": 30, "alert_type": "missing_direction"},
    )
    assert created.status_code == 201
    assert created.json()["author"] == "ops"
    assert [s["id"] for s in api.get("/api/v1/silences").json()] == [created.json()["id"]]
    unmatched = api.post("/api/v1/silences", json={"comment": "all", "duration_minutes": 5})
    assert unmatched.status_code == 422
    assert "needs" in unmatched.json()["detail"]


def test_circuit_breakers_show_open_reset_and_404(
    database: TestDatabase, api: httpx.Client
) -> None:
    """A known circuit can be forced open and reset through the API; an unknown key is 404."""
    breaker = build_circuit_breaker(Settings(database_url=database.url), database.engine)

    async def touch() -> None:
        await breaker.reset(KEY)
        await breaker.aclose()

    asyncio.run(touch())
    assert [c["circuit_key"] for c in api.get("/api/v1/circuit-breakers").json()] == [KEY]
    opened = api.post(f"/api/v1/circuit-breakers/{KEY}/open").json()
    assert (opened["state"], opened["forced_open"]) == ("open", True)
    assert api.get(f"/api/v1/circuit-breakers/{KEY}").json()["state"] == "open"
    assert api.post(f"/api/v1/circuit-breakers/{KEY}/reset").json()["state"] == "closed"
    assert api.get("/api/v1/circuit-breakers/nothing:here").status_code == 404
    assert api.post("/api/v1/circuit-breakers/nothing:here/open").status_code == 404


def test_daily_report_for_a_date(database: TestDatabase, api: httpx.Client) -> None:
    """reports/daily?date= covers that UTC day; a malformed date is 422."""
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(Call(retell_call_id="day-1", appointment_made=False))
        uow.commit()
    today = api.get("/api/v1/reports/daily", params={"date": NOW.date().isoformat()})
    assert today.status_code == 200
    assert today.json()["period"]["start"].startswith(NOW.date().isoformat())
    assert api.get("/api/v1/reports/daily", params={"date": "yesterday"}).status_code == 422


def test_health_metrics_and_request_id(api: httpx.Client) -> None:
    """healthz and readyz answer; /metrics has booking, breaker and monitor series; ids echo."""
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "notifications": "ok", "spool": "ok"},
    }
    api.post("/api/v1/consistency/runs", json={"notify": False})
    text = api.get("/metrics").text
    # One registry serves the monitor's, the booking path's and the breaker's collectors.
    for name in (
        "# TYPE bookingguard_inconsistencies_detected_total counter",
        "# TYPE bookingguard_validation_duration_seconds histogram",
        "# TYPE bookingguard_circuit",
    ):
        assert name in text, name
    assert api.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    assert len(api.get("/healthz").headers["x-request-id"]) == 32


def test_readyz_is_503_before_migrations(tmp_path: Path) -> None:
    """An unmigrated database makes /readyz answer 503, whatever Redis does."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'empty.db'}", redis_url="redis://127.0.0.1:1/0"
    )
    engine = build_engine(settings)
    try:
        with running_server(build_server_app(settings, engine=engine)) as base_url:
            response = httpx.get(f"{base_url}/readyz", timeout=10)
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    checks = response.json()["checks"]
    assert checks["database"].startswith("migrations not at head")
    assert checks["redis"].startswith("unreachable")


def test_61st_request_to_the_served_api_gets_429(database: TestDatabase) -> None:
    """On the composed app with the default 60/minute, the 61st request is 429 with Retry-After."""
    token = make_token(database, "reader", "read")
    app = build_server_app(Settings(database_url=database.url), engine=database.engine)
    with (
        running_server(app) as base_url,
        httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        statuses = [client.get("/api/v1/consistency").status_code for _ in range(60)]
        limited = client.get("/api/v1/alerts")
    assert statuses == [200] * 60
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60


@pytest.mark.parametrize("required", [False, True])
def test_metrics_token_is_required_when_configured(database: TestDatabase, required: bool) -> None:
    """With api.metrics_token_required, /metrics answers a read token only (401 otherwise)."""
    reader = make_token(database, "prometheus", "read")
    settings = Settings(
        database_url=database.url,
        api={"rate_limit": "100000/minute", "metrics_token_required": required},
    )
    app = build_server_app(settings, engine=database.engine)
    with running_server(app) as base_url, httpx.Client(base_url=base_url) as client:
        anonymous = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
        read = client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
    assert read.status_code == 200
    assert "# TYPE bookingguard_circuit" in read.text
    if not required:
        assert (anonymous.status_code, wrong.status_code) == (200, 200)
        return
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert "bookingguard_" not in anonymous.text + wrong.text
