"""The review-queue API over a real HTTP server: auth, scopes, problems, audit, pagination."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from bookingguard.db.models import ManualReviewItem, ReviewAuditLog
from bookingguard.db.uow import UnitOfWork
from bookingguard.tokens import revoke_token
from tests.conftest import TestDatabase
from tests.operator_support import NOW, make_token, operator_app, running_server, seed_review_items


@pytest.fixture
def api(database: TestDatabase) -> Iterator[httpx.Client]:
    with (
        running_server(operator_app(database)) as base_url,
        httpx.Client(base_url=base_url, timeout=10) as client,
    ):
        yield client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def audit_rows(database: TestDatabase) -> list[ReviewAuditLog]:
    with UnitOfWork(database.sessions) as uow:
        return list(uow.session.scalars(select(ReviewAuditLog).order_by(ReviewAuditLog.id)))


def test_auth_matrix_over_every_review_route(database: TestDatabase, api: httpx.Client) -> None:
    """No token → 401, revoked token → 401, read token on an operate route → 403."""
    (item_id,) = seed_review_items(database, [(1, 5)])
    reader = make_token(database, "reader", "read")
    revoked = make_token(database, "gone", "operate")
    with UnitOfWork(database.sessions) as uow:
        revoke_token(uow.session, name="gone", now=NOW)
        uow.commit()
    note = {"note": "checked with the customer"}
    routes = [
        ("GET", "/api/v1/review-queue", None, "read"),
        ("GET", f"/api/v1/review-queue/{item_id}", None, "read"),
        ("POST", f"/api/v1/review-queue/{item_id}/claim", None, "operate"),
        ("POST", f"/api/v1/review-queue/{item_id}/resolve", note, "operate"),
        ("POST", f"/api/v1/review-queue/{item_id}/dismiss", note, "operate"),
    ]
    for method, path, body, scope in routes:
        anonymous = api.request(method, path, json=body)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert api.request(method, path, json=body, headers=bearer(revoked)).status_code == 401
        assert (
            api.request(method, path, json=body, headers=bearer("bg_nonsense")).status_code == 401
        )
        as_reader = api.request(method, path, json=body, headers=bearer(reader))
        assert as_reader.status_code == (200 if scope == "read" else 403), path
    assert audit_rows(database) == []


def test_claim_and_resolve_write_audit_rows(database: TestDatabase, api: httpx.Client) -> None:
    """Claim then resolve: status changes, each with an audit row naming token, IP and details."""
    (item_id,) = seed_review_items(database, [(1, 5)])
    operator = make_token(database, "alice", "operate")
    claimed = api.post(f"/api/v1/review-queue/{item_id}/claim", headers=bearer(operator))
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["status"] == "in_progress"
    assert claimed.json()["assigned_to"] == "alice"
    resolved = api.post(
        f"/api/v1/review-queue/{item_id}/resolve",
        json={"note": "booked by hand in Cal.com"},
        headers=bearer(operator),
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["status"] == "resolved"
    assert body["resolved_by"] == "alice"
    assert body["resolution_note"] == "booked by hand in Cal.com"
    assert [entry["action"] for entry in body["audit"]] == ["claim", "resolve"]
    rows = audit_rows(database)
    assert [(row.actor, row.action, row.ip) for row in rows] == [
        ("alice", "claim", "127.0.0.1"),
        ("alice", "resolve", "127.0.0.1"),
    ]
    assert rows[1].details == {"from_status": "in_progress", "note": "booked by hand in Cal.com"}
    again = api.post(
        f"/api/v1/review-queue/{item_id}/dismiss", json={"note": "x"}, headers=bearer(operator)
    )
    assert again.status_code == 409
    assert len(audit_rows(database)) == 2


def test_resolve_without_note_is_422_and_writes_nothing(
    database: TestDatabase, api: httpx.Client
) -> None:
    """A missing or blank resolution note is a 422 problem; the item and audit log are unchanged."""
    (item_id,) = seed_review_items(database, [(2, 5)])
    operator = make_token(database, "bob", "operate")
    for body in (None, {}, {"note": "   "}):
        response = api.post(
            f"/api/v1/review-queue/{item_id}/resolve", json=body, headers=bearer(operator)
        )
        assert response.status_code == 422
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == 422
        assert "note" in problem["detail"] or "body" in problem["detail"]
    with UnitOfWork(database.sessions) as uow:
        status = uow.session.scalar(
            select(ManualReviewItem.status).where(ManualReviewItem.id == item_id)
        )
    assert status == "pending"
    assert audit_rows(database) == []


def test_dismiss_writes_its_audit_row(database: TestDatabase, api: httpx.Client) -> None:
    """Dismissing a pending item closes it as dismissed with an audit row."""
    (item_id,) = seed_review_items(database, [(3, 5)])
    operator = make_token(database, "carol", "operate")
    response = api.post(
        f"/api/v1/review-queue/{item_id}/dismiss",
        json={"note": "test call from staff"},
        headers=bearer(operator),
    )
    assert response.status_code == 200
    assert response.json()["status"] == "dismissed"
    assert [(row.actor, row.action) for row in audit_rows(database)] == [("carol", "dismiss")]


def test_list_orders_by_priority_then_age_with_cursor(
    database: TestDatabase, api: httpx.Client
) -> None:
    """Priority 1 first, oldest first within a priority; pages follow next_cursor without gaps."""
    ids = seed_review_items(database, [(2, 10), (1, 5), (1, 50), (3, 1), (2, 90)])
    expected = [ids[2], ids[1], ids[4], ids[0], ids[3]]
    reader = make_token(database, "reader", "read")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/review-queue", params=params, headers=bearer(reader)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    filtered = api.get(
        "/api/v1/review-queue", params={"priority": [2, 3]}, headers=bearer(reader)
    ).json()
    assert [item["id"] for item in filtered["items"]] == [ids[4], ids[0], ids[3]]
    bad = api.get("/api/v1/review-queue", params={"cursor": "zzz"}, headers=bearer(reader))
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_unknown_item_is_404_problem(database: TestDatabase, api: httpx.Client) -> None:
    """Showing or claiming an item that does not exist is a 404 problem document."""
    operator = make_token(database, "dave", "operate")
    shown = api.get("/api/v1/review-queue/999", headers=bearer(operator))
    claimed = api.post("/api/v1/review-queue/999/claim", headers=bearer(operator))
    assert shown.status_code == claimed.status_code == 404
    assert shown.json()["detail"] == "review item 999 not found"
    with UnitOfWork(database.sessions) as uow:
        assert uow.session.scalar(select(func.count()).select_from(ReviewAuditLog)) == 0
