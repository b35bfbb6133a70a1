"""deploy/systemd/bookingguard-migrate.service migrates an empty database with the example env."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bookingguard.db import make_engine, migrate
from tests.conftest import DIALECTS, PostgresServer
from tests.unit.test_deploy_files import read_unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTALLED = "/opt/bookingguard/.venv/bin/bookingguard"


def environment_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd reads an EnvironmentFile (the subset the example uses).

    Lines starting with ``#`` or ``;`` are comments; a value wrapped in quotes loses
    them; quotes elsewhere in a value are kept as they are (JSON lists stay JSON).
    """
    values = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, separator, value = stripped.partition("=")
        assert separator, f"not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@pytest.fixture(params=DIALECTS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"{server.prefix}_unit_migrate"
    url = server.create(name)
    yield url
    server.drop(name)


def test_migration_unit_shares_the_service_environment_and_runs_first() -> None:
    """The one-shot migration unit reads the service's env file; the service is ordered after it."""
    service = read_unit("bookingguard.service")
    migration = read_unit("bookingguard-migrate.service")
    assert migration["Service"]["Type"] == "oneshot"
    assert migration["Service"]["EnvironmentFile"] == service["Service"]["EnvironmentFile"]
    assert migration["Service"]["User"] == service["Service"]["User"]
    assert "bookingguard-migrate.service" in service["Unit"]["After"].split()
    assert shlex.split(migration["Service"]["ExecStart"]) == [INSTALLED, "db", "upgrade"]


def test_migration_unit_command_migrates_with_the_example_env_file(
    empty_database_url: str, tmp_path: Path
) -> None:
    """The unit's ExecStart, with deploy/bookingguard.env.example, brings a database to head."""
    command = shlex.split(read_unit("bookingguard-migrate.service")["Service"]["ExecStart"])
    assert command[0] == INSTALLED
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
    environment.update(environment_file(DEPLOY / "bookingguard.env.example"))
    environment["BOOKINGGUARD_DATABASE_URL"] = empty_database_url
    result = subprocess.run(
        [sys.executable, "-m", "bookingguard", *command[1:]],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    engine = make_engine(empty_database_url, pool=False)
    try:
        head = migrate.head_revision(engine)
        assert head is not None
        assert migrate.current_revision(engine) == head
    finally:
        engine.dispose()
    assert f"at revision {head}" in result.stdout
