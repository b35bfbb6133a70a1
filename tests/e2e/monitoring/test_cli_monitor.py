"""``bookingguard check``, ``report`` and ``alerts`` on both dialects.

Most run in-process through Typer's runner (quick); the delivery-before-exit test
runs the real console script as a subprocess.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from bookingguard.cli.app import app
from tests.conftest import TestDatabase
from tests.e2e.test_cli_db import run_cli as run_subprocess
from tests.integration.monitoring.helpers import add_call, play_legacy
from tests.support.slack import SlackStandIn

CONTRACT_KEYS = {
    "run_id",
    "started_at",
    "finished_at",
    "window",
    "findings",
    "totals",
    "auto_corrected",
    "alerts_opened",
    "alerts_resolved",
    "errors",
}


class Outcome:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args: str, env: dict[str, str]) -> Outcome:
    result = CliRunner().invoke(app, list(args), env=env)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def now() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=5)


def env_for(database: TestDatabase, **extra: str) -> dict[str, str]:
    return {"BOOKINGGUARD_DATABASE_URL": database.url, **extra}


def test_clean_database_exits_0_with_the_contract_document(database: TestDatabase) -> None:
    """check --json on consistent data prints exactly the Contract's keys and exits 0."""
    result = run_cli("check", "--json", env=env_for(database))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == CONTRACT_KEYS
    assert set(document["window"]) == {"since", "until"}
    assert document["totals"] == {"critical": 0, "warning": 0, "info": 0}
    assert document["findings"]["missing_appointment"] == {
        "severity": "critical",
        "count": 0,
        "samples": [],
    }


def test_only_warnings_exit_1(database: TestDatabase) -> None:
    """A call with no direction (not fixed) is a warning: exit 1."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(connection, "d", direction=None, created_at=now())
    result = run_cli("check", "--json", "--no-fix", "--no-notify", env=env_for(database))
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["findings"]["missing_direction"]["count"] == 1


def test_phantom_exits_2_and_is_delivered_before_exit(
    database: TestDatabase, slack_standin: SlackStandIn
) -> None:
    """A phantom booking exits 2 and its Slack message has arrived when check returns."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(
            connection,
            "p",
            appointment_made=True,
            session_outcome="appointment_booked",
            created_at=now(),
        )
    env = env_for(database, BOOKINGGUARD_ALERTS__SLACK_WEBHOOK_URL=slack_standin.url)
    result = run_subprocess("check", "--json", env=env)
    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout)["totals"]["critical"] == 1
    assert slack_standin.texts() == ["[CRITICAL] missing_appointment: 1 finding(s)"]


def test_failed_rule_exits_3_and_others_still_report(database: TestDatabase) -> None:
    """With the appointments table gone, its rules error, the rest report, and check exits 3."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(connection, "d", direction=None, created_at=now())
        connection.exec_driver_sql("ALTER TABLE appointments RENAME TO appointments_gone")
    result = run_cli("check", "--json", "--no-notify", env=env_for(database))
    assert result.returncode == 3, result.stderr
    document = json.loads(result.stdout)
    errored = {error["rule"] for error in document["errors"]}
    assert "missing_appointment" in errored
    assert document["findings"]["missing_direction"]["count"] == 1


def test_since_and_all_windows(database: TestDatabase) -> None:
    """A three-hour-old phantom is outside the default window, inside --since 4h and --all."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(
            connection,
            "old",
            appointment_made=True,
            session_outcome="appointment_booked",
            created_at=now() - timedelta(hours=3),
        )
    env = env_for(database)
    assert run_cli("check", "--json", "--no-notify", env=env).returncode == 0
    assert run_cli("check", "--since", "4h", "--no-notify", env=env).returncode == 2
    scanned = run_cli("check", "--all", "--json", "--no-notify", env=env)
    assert scanned.returncode == 2
    assert json.loads(scanned.stdout)["window"]["since"] is None


def test_alerts_list_ack_resolve_and_silence(database: TestDatabase) -> None:
    """alerts list shows the phantom's alert; ack and resolve change it; silence is listed."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(
            connection,
            "p",
            appointment_made=True,
            session_outcome="appointment_booked",
            created_at=now(),
        )
    env = env_for(database)
    run_cli("check", "--no-notify", env=env)
    listed = json.loads(run_cli("alerts", "list", "--json", env=env).stdout)
    assert [a["alert_type"] for a in listed] == ["missing_appointment"]
    alert_id = str(listed[0]["id"])
    acked = json.loads(run_cli("alerts", "ack", alert_id, "--by", "ana", "--json", env=env).stdout)
    assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", "ana")
    resolved = run_cli("alerts", "resolve", alert_id, "--json", env=env)
    assert json.loads(resolved.stdout)["status"] == "resolved"
    assert run_cli("alerts", "resolve", "999999", env=env).returncode == 1
    made = run_cli(
        "alerts",
        "silence",
        "--type",
        "missing_appointment",
        "--author",
        "ana",
        "--comment",
        "migration",
        "--for",
        "1h",
        "--json",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    silences = json.loads(run_cli("alerts", "silences", "--json", env=env).stdout)
    assert [(s["author"], s["comment"]) for s in silences] == [("ana", "migration")]


def test_report_json_has_a_bounded_consistency_rate(database: TestDatabase) -> None:
    """report --format json counts today's calls and keeps the rate between 0 and 100."""
    play_legacy(database)
    with database.engine.begin() as connection:
        for index in range(4):
            add_call(connection, f"ok{index}", created_at=now())
        add_call(
            connection,
            "p",
            appointment_made=True,
            session_outcome="appointment_booked",
            created_at=now(),
        )
    env = env_for(database)
    run_cli("check", "--no-notify", env=env)
    today = datetime.now(UTC).date().isoformat()
    result = run_cli("report", "--date", today, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["total_calls"] == 5
    assert summary["inconsistent_calls"] == 1
    assert summary["consistency_rate_pct"] == 80.0
    html = run_cli("report", "--date", today, "--format", "html", env=env)
    assert "<table>" in html.stdout


def test_unreachable_database_exits_3() -> None:
    """check against a database that does not answer exits 3: the run itself failed."""
    env = {"BOOKINGGUARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = run_cli("check", "--json", env=env)
    assert result.returncode == 3
