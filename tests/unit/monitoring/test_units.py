"""Pure pieces of the monitor: durations, backoff, rendering, exit codes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import typer

from bookingguard.cli.monitor import parse_duration
from bookingguard.monitoring.alerting import RuleOutcome
from bookingguard.monitoring.rules import Window
from bookingguard.monitoring.runner import RunReport
from bookingguard.notify.channels import OutgoingMessage, render_email, render_slack
from bookingguard.notify.delivery import Backoff

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("2h", timedelta(hours=2)), ("7d", timedelta(days=7))],
)
def test_parse_duration_accepts_units(text: str, expected: timedelta) -> None:
    """Durations with s, h and d units parse to timedeltas."""
    assert parse_duration(text) == expected


def test_parse_duration_rejects_garbage() -> None:
    """A duration without a unit is a usage error naming the value."""
    with pytest.raises(typer.BadParameter, match="'2'"):
        parse_duration("2")


def test_backoff_doubles_and_caps_with_bounded_jitter() -> None:
    """Delays double from the base, stop at the cap, and jitter adds at most 10 %."""
    backoff = Backoff(base_seconds=5, max_seconds=60, jitter=0.1)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng).total_seconds() for n in range(1, 7)]
    for delay, base in zip(delays, [5, 10, 20, 40, 60, 60], strict=True):
        assert base <= delay <= base * 1.1


def report_with(*outcomes: RuleOutcome, errors: list[dict[str, str]] | None = None) -> RunReport:
    report = RunReport(run_id=1, started_at=NOW, finished_at=NOW, window=Window(None, NOW))
    report.outcomes = {o.alert_type: o for o in outcomes}
    report.errors = errors or []
    return report


@pytest.mark.parametrize(
    ("severity", "count", "errors", "code"),
    [
        ("critical", 0, [], 0),
        ("warning", 2, [], 1),
        ("critical", 1, [], 2),
        ("critical", 1, [{"rule": "x", "message": "boom"}], 3),
    ],
)
def test_exit_codes_follow_the_data_quality_convention(
    severity: str, count: int, errors: list[dict[str, str]], code: int
) -> None:
    """0 clean, 1 only warnings, 2 anything critical, 3 the run failed."""
    outcome = RuleOutcome(alert_type="r", severity=severity, entity_type="call", count=count)
    assert report_with(outcome, errors=errors).exit_code == code


def test_slack_message_is_block_kit_with_dashboard_button() -> None:
    """Slack payload has fallback text, header and section blocks, and a dashboard button."""
    message = OutgoingMessage(
        outbox_id=3,
        kind="alert",
        subject="[CRITICAL] missing_appointment: 2 finding(s)",
        payload={
            "severity": "critical",
            "count": 2,
            "samples": [{"entity_type": "call", "entity_id": 4}],
            "dashboard_url": "http://d/",
        },
    )
    body = render_slack(message)
    assert body["text"] == message.subject
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "actions"]
    assert "call 4" in body["blocks"][1]["text"]["text"]


def test_email_has_text_and_html_parts_and_stable_message_id() -> None:
    """E-mail is multipart/alternative; its Message-ID derives from the outbox id."""
    message = OutgoingMessage(
        outbox_id=42, kind="alert", subject="<b>x</b>", payload={"severity": "warning", "count": 1}
    )
    email = render_email(message, sender="a@test", recipients=["b@test"])
    assert email["Message-ID"] == "<outbox-42@bookingguard>"
    html = email.get_body(("html",))
    assert html is not None
    assert "&lt;b&gt;x&lt;/b&gt;" in html.get_content()
