"""CLI conventions: --version, exit 3 for "could not run", whole circuit keys, clean help."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bookingguard.cli.app import app
from tests.conftest import TestDatabase

# Loading any of these for --help is what made it take seconds.
HEAVY_MODULES = (
    "alembic",
    "fastapi",
    "httpx",
    "prometheus_client",
    "pydantic_settings",
    "redis",
    "rich",
    "sqlalchemy",
    "uvicorn",
)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


def sqlite_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"BOOKINGGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", **extra}


def command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the click tree under ``command``, groups included."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(command_paths(sub, (*path, name)))
    return paths


def test_version_prints_the_installed_version() -> None:
    """bookingguard --version prints the package's version and exits 0."""
    code, out, _ = invoke("--version")
    assert code == 0
    assert out.strip() == f"bookingguard {version('bookingguard')}"


@pytest.mark.parametrize("command", ["check", "reconcile"])
def test_a_bad_setting_exits_3_naming_the_key(command: str, tmp_path: Path) -> None:
    """A malformed setting makes check and reconcile exit 3 (not a findings code), naming it."""
    env = sqlite_env(tmp_path, BOOKINGGUARD_MONITORING__RECENT_HOURS="soon")
    code, _, err = invoke(command, env=env)
    assert code == 3
    assert "monitoring.recent_hours" in err
    assert "BOOKINGGUARD_MONITORING__RECENT_HOURS" in err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["check", "--since", "soon"], "--since"),
        (["check", "--since", "2h", "--all"], "--all"),
        (["check", "--no-such-flag"], "--no-such-flag"),
        (["reconcile", "--ahead", "1y"], "--ahead"),
    ],
    ids=["bad-duration", "since-and-all", "unknown-option", "reconcile-bad-duration"],
)
def test_usage_errors_of_findings_commands_exit_3(
    args: list[str], option: str, tmp_path: Path
) -> None:
    """A usage error on check or reconcile exits 3 (not click's 2) and names the option."""
    code, _, err = invoke(*args, env=sqlite_env(tmp_path))
    assert code == 3
    assert option in err


def test_usage_errors_elsewhere_keep_exit_2(tmp_path: Path) -> None:
    """Commands without findings codes keep click's usage exit code 2."""
    code, _, _ = invoke("alerts", "list", "--limit", "0", env=sqlite_env(tmp_path))
    assert code == 2


def test_reconcile_without_calcom_exits_3_naming_the_key(tmp_path: Path) -> None:
    """reconcile with Cal.com unconfigured could not run: exit 3 naming the API key setting."""
    code, _, err = invoke("reconcile", "--no-notify", env=sqlite_env(tmp_path))
    assert code == 3
    assert "BOOKINGGUARD_CALCOM__API_KEY" in err


def test_unreachable_database_makes_reconcile_exit_3() -> None:
    """reconcile against a database that does not answer exits 3, not 1 (warnings)."""
    env = {
        "BOOKINGGUARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "BOOKINGGUARD_CALCOM__API_KEY": "cal_test_key",
    }
    code, _, err = invoke("reconcile", env=env)
    assert code == 3
    assert "127.0.0.1:1" in err


def test_breaker_list_shows_whole_keys_on_a_narrow_terminal(database: TestDatabase) -> None:
    """Two keys differing only at the end stay whole and distinct on a 40-column terminal."""
    keys = [f"appointment_booking:event_type:12345678{n}" for n in (1, 2)]
    env = {"BOOKINGGUARD_DATABASE_URL": database.url, "COLUMNS": "40"}
    for key in keys:
        assert invoke("breaker", "open", key, env=env)[0] == 0
    code, out, _ = invoke("breaker", "list", env=env)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["circuit", "state"]
    assert [line.split()[0] for line in lines[1:]] == keys
    assert "…" not in out


def test_breaker_show_of_an_unknown_circuit_exits_1(database: TestDatabase) -> None:
    """breaker show and reset of a circuit never seen exit 1 with a message, as the API's 404."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url}
    for action in ("show", "reset"):
        code, out, err = invoke("breaker", action, "payments:never:seen", "--json", env=env)
        assert (code, out) == (1, "")
        assert "no circuit 'payments:never:seen'" in err
    assert json.loads(invoke("breaker", "list", "--json", env=env)[1]) == []


def test_help_shows_no_bool_metavar_on_any_command() -> None:
    """No command's help prints a type after a flag (Typer's '<bool>')."""
    root = typer.main.get_command(app)
    for path in command_paths(root):
        code, out, _ = invoke(*path, "--help")
        assert code == 0, path
        assert "<bool>" not in out, path
        assert "--help" in out, path


def test_help_loads_no_heavy_dependency() -> None:
    """bookingguard --help (root and commands) imports none of the service's heavy libraries."""
    script = (
        "import sys\n"
        "from bookingguard.cli.app import app\n"
        "for args in (['--help'], ['check', '--help'], ['serve', '--help'],"
        " ['breaker', 'list', '--help'], ['db', 'upgrade', '--help']):\n"
        "    try:\n"
        "        app(args, prog_name='bookingguard')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (args, exc.code)\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "typer" in loaded
    assert loaded.isdisjoint(HEAVY_MODULES), sorted(loaded.intersection(HEAVY_MODULES))
