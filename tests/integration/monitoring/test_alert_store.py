"""Alerts from runs: dedup by fingerprint, resolve, auto-correction and review filing."""

from __future__ import annotations

from sqlalchemy import event, text

from bookingguard.monitoring import AlertPolicy, Monitor
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import (
    Clock,
    add_appointment,
    add_call,
    play_legacy,
    rows,
    scalar,
)


def phantom(database: TestDatabase, key: str) -> int:
    with database.engine.begin() as connection:
        return add_call(
            connection, key, appointment_made=True, session_outcome="appointment_booked"
        )


def test_redetection_bumps_the_one_open_alert(database: TestDatabase) -> None:
    """Three runs over the same phantom leave one open alert with three occurrences."""
    play_legacy(database)
    call_id = phantom(database, "p")
    clock = Clock()
    monitor = Monitor(database.sessions, policy=AlertPolicy(), clock=clock)
    first = monitor.check(notify=False)
    clock.advance(minutes=1)
    monitor.check(notify=False)
    clock.advance(minutes=1)
    third = monitor.check(notify=False)
    assert first.alerts_opened == 1
    assert third.alerts_opened == 0
    found = rows(
        database,
        "SELECT fingerprint, occurrences, status FROM data_consistency_alerts"
        " WHERE alert_type = 'missing_appointment'",
    )
    assert [tuple(r) for r in found] == [(f"missing_appointment:call:{call_id}", 3, "open")]


def test_alert_no_longer_found_is_resolved(database: TestDatabase) -> None:
    """Once the appointment exists the next run resolves the alert and counts it."""
    play_legacy(database)
    call_id = phantom(database, "p")
    clock = Clock()
    monitor = Monitor(database.sessions, policy=AlertPolicy(), clock=clock)
    monitor.check(notify=False)
    with database.engine.begin() as connection:
        add_appointment(connection, call_id)
    clock.advance(minutes=1)
    report = monitor.check(notify=False)
    assert report.alerts_resolved == 1
    status, resolved_at = rows(
        database,
        "SELECT status, resolved_at FROM data_consistency_alerts"
        " WHERE alert_type = 'missing_appointment'",
    )[0]
    assert status == "resolved"
    assert resolved_at is not None


def test_many_findings_are_written_in_one_run(database: TestDatabase) -> None:
    """Two hundred phantoms become two hundred alerts and review items in one run."""
    play_legacy(database)
    with database.engine.begin() as connection:
        for index in range(200):
            add_call(
                connection,
                f"p{index}",
                appointment_made=True,
                session_outcome="appointment_booked",
            )
    report = Monitor(database.sessions, policy=AlertPolicy(), clock=Clock()).check(notify=False)
    assert report.to_dict()["findings"]["missing_appointment"]["count"] == 200
    assert len(report.to_dict()["findings"]["missing_appointment"]["samples"]) == 10
    assert scalar(database, "SELECT count(*) FROM data_consistency_alerts") == 200
    assert (
        scalar(
            database,
            "SELECT count(DISTINCT call_id) FROM manual_review_queue"
            " WHERE status = 'pending' AND priority = 1",
        )
        == 200
    )


def test_fix_sets_direction_and_records_before_and_after(database: TestDatabase) -> None:
    """--fix stores inbound and an auto-corrected, resolved alert with before/after metadata."""
    play_legacy(database)
    with database.engine.begin() as connection:
        call_id = add_call(connection, "d", direction=None)
    report = Monitor(database.sessions, policy=AlertPolicy(), clock=Clock()).check(
        fix=True, notify=False
    )
    assert report.auto_corrected == 1
    assert scalar(database, "SELECT direction FROM calls WHERE id = :i", i=call_id) == "inbound"
    with database.sessions() as session:
        from bookingguard.db.models import ConsistencyAlert

        alert = session.query(ConsistencyAlert).one()
        assert (alert.status, alert.auto_corrected) == ("resolved", True)
        assert alert.metadata_ == {"before": {"direction": None}, "after": {"direction": "inbound"}}


def test_fix_recomputes_link_status_from_appointments(database: TestDatabase) -> None:
    """A call linked without a live appointment becomes unlinked; one with it becomes linked."""
    play_legacy(database)
    with database.engine.begin() as connection:
        stale = add_call(connection, "stale", appointment_link_status="linked")
        missing = add_call(
            connection,
            "missing",
            appointment_made=True,
            session_outcome="appointment_booked",
            appointment_link_status="pending_creation",
        )
        add_appointment(connection, missing)
    report = Monitor(database.sessions, policy=AlertPolicy(), clock=Clock()).check(notify=False)
    assert report.to_dict()["findings"]["inconsistent_link_status"]["count"] == 2
    statuses = dict(
        rows(database, "SELECT retell_call_id, appointment_link_status FROM calls")  # type: ignore[arg-type]
    )
    assert statuses == {"stale": "unlinked", "missing": "linked"}
    assert stale != missing


def test_no_fix_leaves_rows_and_keeps_alert_open(database: TestDatabase) -> None:
    """--no-fix reports the finding and changes nothing in calls."""
    play_legacy(database)
    with database.engine.begin() as connection:
        call_id = add_call(connection, "d", direction=None)
    Monitor(database.sessions, policy=AlertPolicy(), clock=Clock()).check(fix=False, notify=False)
    assert scalar(database, "SELECT direction FROM calls WHERE id = :i", i=call_id) is None
    assert scalar(database, "SELECT status FROM data_consistency_alerts") == "open"


def test_erroring_rule_is_reported_while_others_run(database: TestDatabase) -> None:
    """A rule whose SQL fails is errored, the others still report, and the run is kept failed."""
    from dataclasses import replace

    from bookingguard.monitoring.rules import RULES

    play_legacy(database)
    phantom(database, "p")
    broken = replace(RULES[2], predicate=lambda: text("no_such_column = 1"))  # type: ignore[arg-type,return-value]
    rules = (RULES[0], RULES[1], broken)
    report = Monitor(database.sessions, policy=AlertPolicy(), clock=Clock(), rules=rules).check(
        notify=False
    )
    assert [e["rule"] for e in report.errors] == ["missing_direction"]
    assert report.exit_code == 3
    assert report.to_dict()["findings"]["missing_appointment"]["count"] == 1
    status, results = rows(database, "SELECT status, results FROM check_runs")[0]
    assert status == "failed"
    assert "missing_direction" in str(results)


def test_review_item_is_filed_once_when_the_alert_opens(database: TestDatabase) -> None:
    """A reviewer's closed item is not refiled by later runs while the alert stays open."""
    play_legacy(database)
    phantom(database, "p")
    clock = Clock()
    monitor = Monitor(database.sessions, policy=AlertPolicy(), clock=clock)
    monitor.check(notify=False)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE manual_review_queue SET status = 'resolved'"))
    clock.advance(minutes=1)
    report = monitor.check(notify=False)
    assert report.outcomes["missing_appointment"].review_filed == 0
    assert scalar(database, "SELECT count(*) FROM manual_review_queue") == 1


def test_rule_severities_agree_with_the_database_guarantees(database: TestDatabase) -> None:
    """The trigger's corrected-mismatch alert carries the severity and fingerprint the rule uses."""
    from bookingguard.monitoring.rules import rule_named

    with database.engine.begin() as connection:
        call_id = add_call(
            connection, "t", appointment_made=True, session_outcome="information_only"
        )
    severity, fingerprint = rows(
        database, "SELECT severity, fingerprint FROM data_consistency_alerts"
    )[0]
    assert severity == rule_named("session_outcome_mismatch").severity
    assert fingerprint == f"session_outcome_mismatch:call:{call_id}"


def test_rules_that_find_nothing_write_no_alert(database: TestDatabase) -> None:
    """A run over clean rows with no open alert writes nothing to the alerts table."""
    play_legacy(database)
    statements: list[str] = []

    def keep(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(database.engine, "before_cursor_execute", keep)
    try:
        report = Monitor(database.sessions, policy=AlertPolicy(), clock=Clock()).check(notify=False)
    finally:
        event.remove(database.engine, "before_cursor_execute", keep)
    assert report.errors == []
    writes = [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert writes
    assert [s for s in writes if "data_consistency_alerts" in s] == []


def test_progress_names_each_rule_once_when_the_run_falls_back(database: TestDatabase) -> None:
    """When running the rules together fails, each rule is still reported to progress once."""
    from dataclasses import replace

    from bookingguard.monitoring.rules import RULES

    play_legacy(database)
    broken = replace(RULES[2], predicate=lambda: text("no_such_column = 1"))  # type: ignore[arg-type,return-value]
    rules = (RULES[0], RULES[1], broken, RULES[3])
    names: list[str] = []
    report = Monitor(database.sessions, policy=AlertPolicy(), clock=Clock(), rules=rules).check(
        notify=False, on_rule=names.append
    )
    assert [e["rule"] for e in report.errors] == ["missing_direction"]
    assert sorted(names) == sorted(rule.name for rule in rules)


def test_bumps_of_several_rules_touch_only_what_each_found(database: TestDatabase) -> None:
    """One run bumps each rule's re-detections; another rule's alert on the entity resolves."""
    play_legacy(database)
    with database.engine.begin() as connection:
        both = add_call(
            connection,
            "both",
            direction=None,
            appointment_made=True,
            session_outcome="appointment_booked",
        )
        undirected = add_call(connection, "undirected", direction=None)
    clock = Clock()
    monitor = Monitor(database.sessions, policy=AlertPolicy(), clock=clock)
    monitor.check(fix=False, notify=False)
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE calls SET direction = 'inbound' WHERE id = :id"), {"id": both}
        )
    clock.advance(minutes=1)
    report = monitor.check(fix=False, notify=False)
    found = rows(
        database,
        "SELECT alert_type, entity_id, occurrences, status FROM data_consistency_alerts"
        " ORDER BY alert_type, entity_id",
    )
    assert [tuple(r) for r in found] == [
        ("missing_appointment", both, 2, "open"),
        ("missing_direction", both, 1, "resolved"),
        ("missing_direction", undirected, 2, "open"),
    ]
    assert report.alerts_resolved == 1
