"""The ``bookingguard db`` commands, run as a real subprocess against both dialects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TestDatabase
from tests.support.cli import run_cli


def test_upgrade_and_current_on_a_new_sqlite_file(tmp_path: Path) -> None:
    """db upgrade creates the SQLite file at head; db current --json says it is up to date."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    env = {"BOOKINGGUARD_DATABASE_URL": url}
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    current = run_cli("db", "current", "--json", env=env)
    assert current.returncode == 0, current.stderr
    status = json.loads(current.stdout)
    assert status["up_to_date"] is True
    assert status["current"] == status["head"] == "0009"


def test_triggers_commands(database: TestDatabase) -> None:
    """db triggers disable/status/enable switch a guarantee on both dialects."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    disabled = run_cli("db", "triggers", "disable", "direction", env=env)
    assert disabled.returncode == 0, disabled.stderr
    status = json.loads(run_cli("db", "triggers", "status", "--json", env=env).stdout)
    enabled = {row["name"]: row["enabled"] for row in status}
    assert enabled["calls_default_direction"] is False
    assert enabled["appointments_link_inserted"] is True
    assert run_cli("db", "triggers", "enable", env=env).returncode == 0
    status = json.loads(run_cli("db", "triggers", "status", "--json", env=env).stdout)
    assert all(row["enabled"] for row in status)


def test_unknown_trigger_exits_2_naming_it(database: TestDatabase) -> None:
    """An unknown trigger name exits 2 with the name in the message."""
    result = run_cli(
        "db", "triggers", "disable", "bogus", env={"BOOKINGGUARD_DATABASE_URL": database.url}
    )
    assert result.returncode == 2
    assert "bogus" in result.stderr


def test_unreachable_database_is_one_line_exit_1() -> None:
    """An unreachable PostgreSQL: one line naming the masked URL, exit 1, no traceback."""
    url = "postgresql://bg:topsecret@127.0.0.1:9/bookingguard"
    result = run_cli("db", "current", env={"BOOKINGGUARD_DATABASE_URL": url})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "topsecret" not in result.stderr
    assert "postgresql+psycopg://bg:***@127.0.0.1:9/bookingguard" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        (
            "BOOKINGGUARD_CIRCUIT_BREAKER__FAILURE_THRESHOLD",
            "-3",
            "circuit_breaker.failure_threshold",
        ),
        ("BOOKINGGUARD_DATABASE_URL", "oracle://db/x", "database_url"),
    ],
)
def test_bad_configuration_exits_2_naming_the_key(name: str, value: str, key: str) -> None:
    """A bad configuration value stops the program with exit 2 and the key's name."""
    result = run_cli("db", "current", env={name: value})
    assert result.returncode == 2
    assert key in result.stderr
    assert name in result.stderr
