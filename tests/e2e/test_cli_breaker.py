"""``bookingguard breaker``: a circuit opened from the CLI is seen by other processes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from bookingguard.cli.app import app
from bookingguard.resilience import CircuitBreaker, CircuitOpenError
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import NOW
from tests.support.circuits import KEY as SEEDED
from tests.support.circuits import seed_open_circuit
from tests.support.cli import run_cli

KEY = "appointment_booking:event_type:11"


def call_once(database: TestDatabase) -> str:
    """One guarded call from this process: 'ok' or 'rejected'."""

    async def ok() -> str:
        return "ok"

    async def main() -> str:
        breaker = CircuitBreaker.from_settings(
            Settings(database_url=database.url),
            engine=database.engine,
            registry=CollectorRegistry(),
        )
        try:
            return await breaker.call(KEY, ok)
        except CircuitOpenError:
            return "rejected"
        finally:
            await breaker.aclose()

    return asyncio.run(main())


def test_open_in_one_process_is_seen_by_another(database: TestDatabase) -> None:
    """breaker open (a subprocess) rejects calls here; list reports it; reset closes it."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    opened = run_cli("breaker", "open", KEY, "--json", env=env)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["state"] == "open"
    assert call_once(database) == "rejected"

    runner = CliRunner()
    listed = runner.invoke(app, ["breaker", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    circuits = json.loads(listed.stdout)
    assert [(c["circuit_key"], c["state"], c["forced_open"]) for c in circuits] == [
        (KEY, "open", True)
    ]
    assert circuits[0]["not_permitted_count"] == 1

    reset = runner.invoke(app, ["breaker", "reset", KEY, "--json"], env=env)
    assert reset.exit_code == 0, reset.output
    assert json.loads(reset.stdout)["state"] == "closed"
    assert call_once(database) == "ok"


def test_show_prints_a_readable_summary(database: TestDatabase) -> None:
    """breaker show without --json prints one field per line, keys verbatim."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    runner = CliRunner()
    assert runner.invoke(app, ["breaker", "open", "x:b:1"], env=env).exit_code == 0
    runner.invoke(app, ["breaker", "reset", "x:b:1"], env=env)
    shown = runner.invoke(app, ["breaker", "show", "x:b:1"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "circuit_key: x:b:1" in shown.stdout
    assert "state: closed" in shown.stdout


def test_elapsed_cooldown_reads_as_awaiting_the_probe(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list and show: open until the cooldown's end, then "open, next call probes", no time."""
    seed_open_circuit(database, opened_at=NOW, cooldown=timedelta(seconds=30))
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    runner = CliRunner()

    monkeypatch.setattr("bookingguard.cli.breaker.utc_now", lambda: NOW + timedelta(seconds=10))
    shown = json.loads(runner.invoke(app, ["breaker", "show", SEEDED, "--json"], env=env).stdout)
    assert (shown["status"], shown["awaiting_probe"]) == ("open", False)
    assert shown["open_until"] == (NOW + timedelta(seconds=30)).isoformat()

    monkeypatch.setattr("bookingguard.cli.breaker.utc_now", lambda: NOW + timedelta(minutes=5))
    shown = json.loads(runner.invoke(app, ["breaker", "show", SEEDED, "--json"], env=env).stdout)
    assert (shown["state"], shown["status"], shown["awaiting_probe"]) == (
        "open",
        "open, next call probes",
        True,
    )
    assert shown["open_until"] is None
    listed = runner.invoke(app, ["breaker", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()
    assert "open, next call probes" in row
    until = header.index("open until")
    assert row[until:].split("  ")[0] == "-"
    text = runner.invoke(app, ["breaker", "show", SEEDED], env=env).stdout
    assert "status: open, next call probes" in text
    assert "open_until: -" in text
