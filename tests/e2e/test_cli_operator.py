"""``bookingguard token`` and ``bookingguard review`` as real subprocesses on both dialects."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from bookingguard.db.models import ReviewAuditLog
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase
from tests.e2e.test_cli_db import run_cli
from tests.operator_support import operator_app, running_server, seed_review_items


def test_token_create_prints_it_once_and_revoke_stops_it(database: TestDatabase) -> None:
    """token create --json prints a working token; after token revoke the API answers 401."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    created = run_cli("token", "create", "--name", "ops", "--scope", "operate", "--json", env=env)
    assert created.returncode == 0, created.stderr
    payload = json.loads(created.stdout)
    assert set(payload) == {"name", "scope", "token"}
    assert (payload["name"], payload["scope"]) == ("ops", "operate")
    duplicate = run_cli("token", "create", "--name", "ops", "--scope", "read", env=env)
    assert duplicate.returncode == 2
    assert "already exists" in duplicate.stderr
    headers = {"Authorization": f"Bearer {payload['token']}"}
    with running_server(operator_app(database)) as base_url:
        assert httpx.get(base_url + "/api/v1/review-queue", headers=headers).status_code == 200
        revoked = run_cli("token", "revoke", "ops", env=env)
        assert revoked.returncode == 0, revoked.stderr
        assert httpx.get(base_url + "/api/v1/review-queue", headers=headers).status_code == 401
    assert run_cli("token", "revoke", "nobody", env=env).returncode == 1


def test_review_cli_lists_shows_and_resolves_with_audit(database: TestDatabase) -> None:
    """review list/show/resolve: priority order, note required (exit 2), resolve audited."""
    ids = seed_review_items(database, [(2, 5), (1, 1)])
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    listed = run_cli("review", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)["items"]] == [ids[1], ids[0]]
    no_note = run_cli("review", "resolve", str(ids[1]), env=env)
    assert no_note.returncode == 2
    assert "note is required" in no_note.stderr
    resolved = run_cli(
        "review", "resolve", str(ids[1]), "--note", "rebooked", "--actor", "cli:ops", env=env
    )
    assert resolved.returncode == 0, resolved.stderr
    shown = json.loads(run_cli("review", "show", str(ids[1]), "--json", env=env).stdout)
    assert shown["status"] == "resolved"
    assert [(entry["actor"], entry["action"]) for entry in shown["audit"]] == [
        ("cli:ops", "resolve")
    ]
    with UnitOfWork(database.sessions) as uow:
        rows = uow.session.scalars(select(ReviewAuditLog)).all()
    assert [(row.actor, row.action, row.details) for row in rows] == [
        ("cli:ops", "resolve", {"from_status": "pending", "note": "rebooked"})
    ]
    assert run_cli("review", "show", "9999", env=env).returncode == 1


def test_demo_refuses_to_mix_and_reset_reloads(database: TestDatabase) -> None:
    """demo --json loads data; a second demo exits 1; --if-empty is a no-op; --reset reloads."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    args = ("demo", "--days", "2", "--calls-per-day", "50", "--json")
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["injected"]["missing_appointment"] == 2
    assert run_cli(*args, env=env).returncode == 1
    assert run_cli("demo", "--if-empty", env=env).returncode == 0
    again = run_cli(*args, "--reset", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == summary


@pytest.mark.parametrize("note", ["\u200b", "\u200b\u2060 \ufeff", "\t\u00a0", "\U000e0041"])
def test_review_cli_refuses_a_note_that_shows_nothing(database: TestDatabase, note: str) -> None:
    """A note of zero-width or other invisible characters is no note: exit 2, nothing written."""
    ids = seed_review_items(database, [(1, 1)])
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    for extra in ([], ["--dismiss"]):
        refused = run_cli("review", "resolve", str(ids[0]), "--note", note, *extra, env=env)
        assert refused.returncode == 2, refused.stdout
        assert "a resolution note is required" in refused.stderr
    shown = json.loads(run_cli("review", "show", str(ids[0]), "--json", env=env).stdout)
    assert (shown["status"], shown["resolution_note"], shown["audit"]) == ("pending", None, [])
