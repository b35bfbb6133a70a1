"""Notifications end to end: grouping, throttle, repeat, resolve, silences, inhibition, retries.

Real channels: the Slack stand-in over HTTP and aiosmtpd over SMTP; time is an injected clock.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection

from bookingguard.db.models import CircuitBreakerState
from bookingguard.monitoring import AlertPolicy, Monitor
from bookingguard.monitoring.admin import create_silence
from bookingguard.notify.channels import EmailChannel, LogChannel, SlackChannel
from bookingguard.notify.delivery import Backoff, OutboxDelivery
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import (
    Clock,
    add_appointment,
    add_call,
    play_legacy,
    scalar,
)
from tests.support.slack import SlackStandIn
from tests.support.smtp import SmtpSink

DASHBOARD = "http://dashboard.test/alerts"


class Rig:
    """A monitor and a delivery worker wired to the stand-ins, sharing one clock."""

    def __init__(
        self, database: TestDatabase, slack: SlackStandIn, smtp: tuple[SmtpSink, int]
    ) -> None:
        self.clock = Clock()
        self.database = database
        policy = AlertPolicy(
            channels=("slack", "email", "log"),
            throttle=timedelta(minutes=5),
            repeat_interval=timedelta(hours=4),
            dashboard_url=DASHBOARD,
        )
        self.monitor = Monitor(database.sessions, policy=policy, clock=self.clock)
        sink, port = smtp
        self.sink = sink
        self.delivery = OutboxDelivery(
            database.sessions,
            {
                "slack": SlackChannel(slack.url),
                "email": EmailChannel(
                    host="127.0.0.1", port=port, sender="bg@test", recipients=["ops@test"]
                ),
                "log": LogChannel(),
            },
            clock=self.clock,
            backoff=Backoff(base_seconds=10, jitter=0),
        )

    def run(self) -> None:
        self.monitor.check(since=timedelta(days=1))
        self.delivery.deliver_due()


def phantoms(connection: Connection, count: int, prefix: str = "p") -> list[int]:
    return [
        add_call(
            connection, f"{prefix}{i}", appointment_made=True, session_outcome="appointment_booked"
        )
        for i in range(count)
    ]


def test_outage_is_one_grouped_message_per_channel(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """200 phantom bookings arrive as one Slack and one e-mail message with count and 10 samples."""
    play_legacy(database)
    with database.engine.begin() as connection:
        phantoms(connection, 200)
    rig = Rig(database, slack_standin, smtp_sink)
    rig.run()
    critical = [b for b in slack_standin.received if "missing_appointment" in b["text"]]
    assert len(critical) == 1
    section = critical[0]["blocks"][1]["text"]["text"]
    assert "Count: 200" in section
    assert section.count("call ") == 10
    assert critical[0]["blocks"][2]["elements"][0]["url"] == DASHBOARD
    mails = [m for m in rig.sink.messages if "missing_appointment" in str(m["Subject"])]
    assert len(mails) == 1
    assert mails[0].get_body(("plain",)) is not None
    html = mails[0].get_body(("html",))
    assert html is not None
    assert "Count: 200" in html.get_content()


def test_throttle_and_repeat_follow_the_last_successful_send(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """An open alert is not re-sent each minute, a new one is, the old one repeats after 4 h."""
    play_legacy(database)
    with database.engine.begin() as connection:
        phantoms(connection, 1, "a")
    rig = Rig(database, slack_standin, smtp_sink)
    rig.run()
    for _ in range(10):
        rig.clock.advance(minutes=1)
        rig.run()
    assert len(slack_standin.received) == 1
    with database.engine.begin() as connection:
        phantoms(connection, 1, "b")
    rig.clock.advance(minutes=1)
    rig.run()
    assert len(slack_standin.received) == 2
    assert "1 finding" in slack_standin.texts()[1]
    rig.clock.advance(hours=4)
    rig.run()
    assert len(slack_standin.received) == 3
    assert "2 finding" in slack_standin.texts()[2]


def test_resolved_alert_sends_a_resolved_notification(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """When the phantom gets its appointment, a RESOLVED message follows on every channel."""
    play_legacy(database)
    with database.engine.begin() as connection:
        (call_id,) = phantoms(connection, 1)
    rig = Rig(database, slack_standin, smtp_sink)
    rig.run()
    with database.engine.begin() as connection:
        add_appointment(connection, call_id)
    rig.clock.advance(minutes=1)
    rig.run()
    resolved = "[RESOLVED] missing_appointment: 1 resolved"
    assert resolved in slack_standin.texts()
    assert resolved in rig.sink.subjects()


def test_silence_mutes_until_it_expires(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """A silence on the rule keeps it quiet; after expiry the still-open alert is sent."""
    play_legacy(database)
    with database.engine.begin() as connection:
        phantoms(connection, 3)
    rig = Rig(database, slack_standin, smtp_sink)
    with database.sessions.begin() as session:
        create_silence(
            session,
            author="ops",
            comment="known incident",
            alert_type="missing_appointment",
            expires_at=rig.clock.now + timedelta(minutes=30),
            now=rig.clock.now,
        )
    rig.run()
    assert slack_standin.received == []
    rig.clock.advance(minutes=31)
    rig.run()
    assert len(slack_standin.received) == 1


def test_open_booking_circuit_folds_phantoms_into_one_dependency_message(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """While appointment_booking's circuit is open, phantoms are one 'booking dependency down'."""
    play_legacy(database)
    with database.engine.begin() as connection:
        phantoms(connection, 5)
    with database.sessions.begin() as session:
        session.add(
            CircuitBreakerState(circuit_key="appointment_booking:event_type:7", state="open")
        )
    rig = Rig(database, slack_standin, smtp_sink)
    rig.run()
    texts = slack_standin.texts()
    assert len(texts) == 1
    assert texts[0].startswith("Booking dependency down (appointment_booking:event_type:7)")
    assert "5 calls" in texts[0]


def test_failing_slack_is_retried_and_does_not_hold_back_email(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """Slack answers 500 twice: e-mail goes at once, Slack after backoff, each exactly once."""
    play_legacy(database)
    with database.engine.begin() as connection:
        phantoms(connection, 1)
    rig = Rig(database, slack_standin, smtp_sink)
    slack_standin.fail_next(2)
    rig.run()
    assert slack_standin.received == []
    assert len(rig.sink.messages) == 1
    rig.clock.advance(minutes=1)
    rig.run()
    assert slack_standin.received == []
    rig.clock.advance(minutes=1)
    rig.run()
    assert len(slack_standin.received) == 1
    for _ in range(3):
        rig.clock.advance(minutes=1)
        rig.run()
    assert len(slack_standin.received) == 1
    assert len(rig.sink.messages) == 1
    assert scalar(database, "SELECT count(*) FROM notification_outbox WHERE status <> 'sent'") == 0


def test_two_workers_never_send_the_same_row(
    database: TestDatabase, slack_standin: SlackStandIn
) -> None:
    """Two delivery workers draining one outbox at once send each message exactly once."""
    import threading
    from datetime import UTC, datetime

    from bookingguard.db.models import NotificationOutbox

    now = datetime.now(UTC)
    with database.sessions.begin() as session:
        session.add_all(
            NotificationOutbox(
                channel="slack",
                kind="alert",
                subject=f"m{index}",
                payload={"severity": "info"},
                fingerprints=[],
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for index in range(20)
        )
    workers = [
        OutboxDelivery(database.sessions, {"slack": SlackChannel(slack_standin.url)})
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.deliver_due) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(slack_standin.texts()) == sorted(f"m{index}" for index in range(20))


async def test_breaker_forced_open_inhibits_per_call_phantom_messages(
    database: TestDatabase, slack_standin: SlackStandIn, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """A real CircuitBreaker forced open on a booking circuit folds phantoms into one message."""
    from bookingguard.resilience import CircuitBreaker
    from bookingguard.settings import Settings

    play_legacy(database)
    with database.engine.begin() as connection:
        phantoms(connection, 3)
    breaker = CircuitBreaker.from_settings(
        Settings(database_url=database.url), engine=database.engine
    )
    await breaker.force_open("appointment_booking:event_type:9")
    await breaker.drain()
    rig = Rig(database, slack_standin, smtp_sink)
    rig.run()
    assert [t for t in slack_standin.texts() if "missing_appointment" in t] == []
    assert any(t.startswith("Booking dependency down") for t in slack_standin.texts())
    await breaker.reset("appointment_booking:event_type:9")
    await breaker.drain()


def test_daily_report_goes_out_through_the_outbox(
    database: TestDatabase, slack_standin: SlackStandIn
) -> None:
    """The daily job queues the report; delivery posts its rate and counts to Slack."""
    from bookingguard.monitoring.service import MonitoringService
    from bookingguard.settings import Settings

    clock = Clock()
    service = MonitoringService(
        database.sessions,
        Settings(database_url=database.url),
        clock=clock,
        channels={"slack": SlackChannel(slack_standin.url)},
    )
    with database.engine.begin() as connection:
        add_call(connection, "c", created_at=clock.now - timedelta(days=1))
    service.send_daily_report()
    service.deliver()
    (body,) = slack_standin.received
    assert body["text"].endswith("100.00 % consistent")
    assert "total_calls: 1" in body["blocks"][1]["text"]["text"]
