"""Dashboard form posts are refused for read-only tokens, for forms from another site and for
forms without the session's CSRF token."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from bookingguard.api.dashboard.routes import login_url
from bookingguard.db.models import ManualReviewItem, ReviewAuditLog
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase
from tests.operator_support import (
    csrf_token_of,
    make_token,
    operator_app,
    running_server,
    seed_review_items,
)


def test_read_token_and_foreign_origin_cannot_change_anything(database: TestDatabase) -> None:
    """A read token's resolve and a cross-site form post are refused; nothing is written."""
    (item_id,) = seed_review_items(database, [(1, 5)])
    reader = make_token(database, "viewer", "read")
    operator = make_token(database, "ops", "operate")
    with running_server(operator_app(database)) as base_url:
        with httpx.Client(base_url=base_url, follow_redirects=True) as viewer:
            csrf = csrf_token_of(viewer.get(login_url(base_url, reader)).text)
            page = viewer.post(
                f"/review/{item_id}/resolve", data={"note": "done", "csrf_token": csrf}
            )
            assert page.status_code == 200
            assert "can only read" in page.text
        with httpx.Client(base_url=base_url, follow_redirects=True) as ops:
            csrf = csrf_token_of(ops.get(login_url(base_url, operator)).text)
            page = ops.post(
                f"/review/{item_id}/resolve",
                data={"note": "done", "csrf_token": csrf},
                headers={"Origin": "https://evil.example"},
            )
            assert "another site" in page.text
            # Same host, other scheme: another origin.
            page = ops.post(
                f"/review/{item_id}/resolve",
                data={"note": "done", "csrf_token": csrf},
                headers={"Origin": base_url.replace("http://", "https://")},
            )
            assert "another site" in page.text
            # No Origin and no CSRF token (a form another site made a browser send).
            page = ops.post(f"/review/{item_id}/resolve", data={"note": "done"})
            assert "not from this dashboard session" in page.text
            page = ops.post(
                f"/review/{item_id}/resolve",
                data={"note": "done", "csrf_token": "forged"},
                headers={"Origin": base_url},
            )
            assert "not from this dashboard session" in page.text
            for blank in ("", "\u200b", " \u2060\ufeff "):
                page = ops.post(
                    f"/review/{item_id}/resolve", data={"note": blank, "csrf_token": csrf}
                )
                assert "note is required" in page.text
    with UnitOfWork(database.sessions) as uow:
        assert uow.session.scalar(select(func.count()).select_from(ReviewAuditLog)) == 0
        status = uow.session.scalar(
            select(ManualReviewItem.status).where(ManualReviewItem.id == item_id)
        )
    assert status == "pending"
