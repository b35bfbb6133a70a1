"""Each detection rule against crafted legacy data, on both dialects."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from bookingguard.monitoring import AlertPolicy, Monitor
from bookingguard.monitoring.rules import (
    RULES,
    STALE_CLAIM_AFTER,
    Reach,
    Window,
    reach,
    shared_call_scan,
    windowed,
)
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import (
    NOW,
    Clock,
    add_appointment,
    add_call,
    booked_call,
    play_legacy,
    rows,
)


def monitor_for(database: TestDatabase, clock: Clock | None = None) -> Monitor:
    return Monitor(database.sessions, policy=AlertPolicy(), clock=clock or Clock())


def craft_outcome_mismatch(connection: Connection) -> int:
    return add_call(connection, "m1", appointment_made=False, session_outcome="appointment_booked")


def craft_phantom(connection: Connection) -> int:
    return add_call(
        connection,
        "p1",
        appointment_made=True,
        session_outcome="appointment_booked",
    )


def craft_missing_direction(connection: Connection) -> int:
    return add_call(connection, "d1", direction=None)


def craft_orphan(connection: Connection) -> int:
    return add_appointment(connection, None, calcom_booking_uid="orphan")


def craft_link_status(connection: Connection) -> int:
    call_id = add_call(
        connection, "l1", appointment_made=True, session_outcome="appointment_booked"
    )
    add_appointment(connection, call_id)
    return call_id


def craft_stale_claim(connection: Connection) -> int:
    call_id = add_call(connection, "s1")
    return add_appointment(
        connection,
        call_id,
        created_at=NOW - STALE_CLAIM_AFTER - timedelta(minutes=5),
        status="pending_creation",
        idempotency_key="k-stale",
    )


def craft_failure(connection: Connection) -> int:
    return add_call(connection, "f1", booking_failed=True, booking_failure_reason="slot taken")


CASES: list[tuple[str, str, Callable[[Connection], int]]] = [
    ("session_outcome_mismatch", "critical", craft_outcome_mismatch),
    ("missing_appointment", "critical", craft_phantom),
    ("missing_direction", "warning", craft_missing_direction),
    ("orphaned_appointment", "warning", craft_orphan),
    ("inconsistent_link_status", "warning", craft_link_status),
    ("stale_booking_claim", "critical", craft_stale_claim),
    ("recent_failures", "info", craft_failure),
]


@pytest.mark.parametrize("scan_all", [False, True], ids=["window", "all"])
@pytest.mark.parametrize(("rule", "severity", "craft"), CASES, ids=[c[0] for c in CASES])
def test_rule_finds_its_crafted_row(
    database: TestDatabase,
    rule: str,
    severity: str,
    craft: Callable[[Connection], int],
    scan_all: bool,
) -> None:
    """Each rule, windowed or over all rows, reports the one bad entity with its severity."""
    play_legacy(database)
    with database.engine.begin() as connection:
        booked_call(connection, "good-1")
        booked_call(connection, "good-2")
        bad_id = craft(connection)
    report = monitor_for(database).check(fix=False, notify=False, scan_all=scan_all)
    assert report.errors == []
    finding = report.to_dict()["findings"][rule]
    assert finding["severity"] == severity
    assert finding["count"] == 1
    assert finding["samples"][0]["entity_id"] == bad_id
    others = {name: f["count"] for name, f in report.to_dict()["findings"].items() if name != rule}
    assert set(others.values()) == {0}, others


@pytest.mark.parametrize("scan_all", [False, True], ids=["window", "all"])
def test_a_claim_is_no_live_appointment(database: TestDatabase, scan_all: bool) -> None:
    """A booking's claim (pending_creation) holds no slot: an unflagged call with one is no
    orphan and no link mismatch, and a flagged call with only a claim is a phantom."""
    play_legacy(database)
    with database.engine.begin() as connection:
        waiting = add_call(connection, "c1")
        add_appointment(connection, waiting, status="pending_creation", idempotency_key="k1")
        phantom = add_call(
            connection,
            "c2",
            appointment_made=True,
            session_outcome="appointment_booked",
            appointment_link_status="unlinked",
        )
        add_appointment(connection, phantom, status="pending_creation", idempotency_key="k2")
    report = monitor_for(database).check(fix=False, notify=False, scan_all=scan_all)
    assert report.errors == []
    counts = {name: f["count"] for name, f in report.to_dict()["findings"].items()}
    assert counts == dict.fromkeys(counts, 0) | {"missing_appointment": 1}
    samples = report.to_dict()["findings"]["missing_appointment"]["samples"]
    assert [sample["entity_id"] for sample in samples] == [phantom]


def test_a_claim_left_pending_is_filed_for_review_until_it_settles(
    database: TestDatabase,
) -> None:
    """A claim younger than ``STALE_CLAIM_AFTER`` is a booking in flight; one older is a
    request that died: its call is filed for review once. Filled, its alert resolves."""
    play_legacy(database)
    clock = Clock()
    with database.engine.begin() as connection:
        dead = add_call(connection, "dead")
        stale = add_appointment(
            connection,
            dead,
            created_at=NOW - STALE_CLAIM_AFTER - timedelta(seconds=1),
            status="pending_creation",
            idempotency_key="k-dead",
        )
        in_flight = add_call(connection, "in-flight")
        fresh = add_appointment(
            connection,
            in_flight,
            created_at=NOW - timedelta(minutes=1),
            status="pending_creation",
            idempotency_key="k-in-flight",
        )
    monitor = monitor_for(database, clock)

    def found() -> list[int]:
        finding = monitor.check(fix=False, notify=False).to_dict()["findings"]
        return sorted(s["entity_id"] for s in finding["stale_booking_claim"]["samples"])

    def open_alerts() -> list[int]:
        return [
            row[0]
            for row in rows(
                database,
                "SELECT entity_id FROM data_consistency_alerts"
                " WHERE alert_type = 'stale_booking_claim' AND status = 'open' ORDER BY entity_id",
            )
        ]

    assert found() == [stale]
    assert rows(database, "SELECT call_id, reason FROM manual_review_queue") == [
        (dead, "stale_booking_claim")
    ]
    clock.now = NOW + STALE_CLAIM_AFTER
    assert found() == [stale, fresh]
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE appointments SET status = 'booked', calcom_booking_uid = 'u' WHERE id = :id"
            ),
            {"id": stale},
        )
    assert found() == [fresh]
    assert open_alerts() == [fresh]
    assert [row[0] for row in rows(database, "SELECT call_id FROM manual_review_queue")] == [
        dead,
        in_flight,
    ]


def test_window_excludes_older_rows_and_all_includes_them(database: TestDatabase) -> None:
    """A phantom from yesterday is outside the 1-hour window but found by --all."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(
            connection,
            "old",
            created_at=NOW - timedelta(days=1),
            appointment_made=True,
            session_outcome="appointment_booked",
        )
    monitor = monitor_for(database)
    assert monitor.check(notify=False).to_dict()["findings"]["missing_appointment"]["count"] == 0
    assert (
        monitor.check(scan_all=True, notify=False).to_dict()["findings"]["missing_appointment"][
            "count"
        ]
        == 1
    )


def test_samples_carry_no_phone_numbers(database: TestDatabase) -> None:
    """Samples name entities by id and retell id, never by phone number."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(
            connection,
            "pii",
            from_number="+4915112345678",
            to_number="+4930123456",
            appointment_made=True,
            session_outcome="appointment_booked",
        )
    document = monitor_for(database).check(notify=False).to_dict()
    assert "+49" not in str(document)
    assert rows(database, "SELECT count(*) FROM check_runs")[0][0] == 1


def craft_out_of_order(database: TestDatabase) -> None:
    """Calls and appointments in and out of the window, ids out of time order; appointments
    without a call that are no orphans (booked at Cal.com, rejected)."""
    play_legacy(database)
    yesterday = NOW - timedelta(days=1)
    booked = {"appointment_made": True, "session_outcome": "appointment_booked"}
    with database.engine.begin() as connection:
        add_call(connection, "clean", id=50, appointment_link_status="linked", **booked)
        add_appointment(connection, 50)
        add_call(connection, "phantom", id=10, **booked)
        add_call(connection, "old", id=90, created_at=yesterday, **booked)
        add_appointment(connection, 90)
        add_call(connection, "cancelled", id=30, appointment_link_status="linked", **booked)
        add_appointment(connection, 30, status="cancelled")
        add_call(connection, "unlinked", id=70)
        add_appointment(connection, 70, created_at=yesterday)
        add_call(connection, "unflagged", id=5, created_at=yesterday)
        add_appointment(connection, 5)
        add_appointment(connection, None)
        add_appointment(connection, None, status="cancelled")
        # Neither is an orphan: one booked at Cal.com (no call by design), one rejected.
        add_appointment(connection, None, source="calcom")
        add_appointment(connection, None, status="rejected")
        add_call(connection, "mismatch", id=60, session_outcome="appointment_booked")
        add_call(connection, "no direction", id=80, direction=None, booking_failed=True)
        add_call(connection, "failed yesterday", id=3, created_at=yesterday, booking_failed=True)


def test_window_reach_finds_what_the_plain_predicates_find(database: TestDatabase) -> None:
    """Bounded by the window's lowest call ids, the rules find the same rows, ids out of order."""
    craft_out_of_order(database)
    plain = Window(since=NOW - timedelta(hours=1), until=NOW)
    with database.sessions() as session:
        reached = reach(session, plain)
        found = {rule.name: sorted(session.scalars(rule.ids(reached))) for rule in RULES}
        expected = {rule.name: sorted(session.scalars(rule.ids(plain))) for rule in RULES}
        built = {rule.name: windowed(rule, reached) for rule in RULES}
        found_built = {
            name: sorted(session.scalars(*statement))
            for name, statement in built.items()
            if statement is not None
        }
    assert reached.reach == Reach(calls_from=10, appointment_calls_from=5)
    assert found == expected
    # Built once with parameters, the window forms find what they find built with values.
    assert set(found_built) == {rule.name for rule in RULES if rule.ids_window is not None}
    assert found_built == {name: found[name] for name in found_built}
    assert found["missing_appointment"] == [10, 30]
    assert found["inconsistent_link_status"] == [30, 70]
    assert len(found["orphaned_appointment"]) == 2


def test_every_row_forms_find_what_the_plain_predicates_find(database: TestDatabase) -> None:
    """Over every row, a rule's own phrasing (ids_all) finds what its plain predicate finds."""
    craft_out_of_order(database)
    everything = Window(since=None, until=NOW)
    phrased = [rule for rule in RULES if rule.ids_all is not None]
    with database.sessions() as session:
        found = {rule.name: sorted(session.scalars(rule.ids(everything))) for rule in phrased}
        expected = {
            rule.name: sorted(session.scalars(replace(rule, ids_all=None).ids(everything)))
            for rule in phrased
        }
    assert {"orphaned_appointment", "inconsistent_link_status"} <= set(found)
    assert found == expected
    # The appointments of the two unflagged calls and the live one of no call; not the
    # cancelled, the rejected or the one made at Cal.com.
    assert len(found["orphaned_appointment"]) == 3


def test_samples_of_calls_and_appointments_in_one_run(database: TestDatabase) -> None:
    """Read in one statement for both tables, each rule's samples are its own rows' columns."""
    craft_out_of_order(database)
    findings = monitor_for(database).check(fix=False, notify=False).to_dict()["findings"]
    phantoms = findings["missing_appointment"]["samples"]
    assert [(sample["entity_id"], sample["retell_call_id"]) for sample in phantoms] == [
        (10, "phantom"),
        (30, "cancelled"),
    ]
    assert {key for sample in phantoms for key in sample} == {
        "entity_type",
        "entity_id",
        "retell_call_id",
        "session_outcome",
    }
    orphans = findings["orphaned_appointment"]["samples"]
    assert sorted((sample["call_id"] or 0, sample["status"]) for sample in orphans) == [
        (0, "booked"),
        (5, "booked"),
    ]
    assert {key for sample in orphans for key in sample} == {
        "entity_type",
        "entity_id",
        "call_id",
        "calcom_booking_uid",
        "status",
    }
    assert {sample["entity_type"] for sample in orphans} == {"appointment"}


def test_rules_outside_the_shared_scan_run_beside_it_on_postgresql(
    database: TestDatabase,
) -> None:
    """On PostgreSQL the orphaned-appointment rule runs at the same time as the shared scan
    of calls, on another connection: the scan waits here until the rule's statement has
    returned, which a run doing one after the other could not. On SQLite they share one."""
    craft_out_of_order(database)
    connections: dict[str, set[int]] = {"scan": set(), "orphans": set()}
    orphans_found = threading.Event()
    waited: list[bool] = []

    def kind(statement: str) -> str | None:
        return "orphans" if "orphaned" in statement else "scan" if "found_0" in statement else None

    def before(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if (found := kind(statement)) is not None:
            connections[found].add(id(connection.connection.dbapi_connection))
        if found == "scan" and database.dialect == "postgresql":
            waited.append(orphans_found.wait(timeout=10))

    def after(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if kind(statement) == "orphans":
            orphans_found.set()

    event.listen(database.engine, "before_cursor_execute", before)
    event.listen(database.engine, "after_cursor_execute", after)
    try:
        report = monitor_for(database).check(fix=False, notify=False)
    finally:
        event.remove(database.engine, "before_cursor_execute", before)
        event.remove(database.engine, "after_cursor_execute", after)
    assert report.errors == []
    assert report.outcomes["orphaned_appointment"].count == 2
    assert report.outcomes["missing_appointment"].count == 2
    assert connections["scan"]
    assert connections["orphans"]
    if database.dialect == "postgresql":
        assert waited == [True]
        assert connections["scan"].isdisjoint(connections["orphans"])
    else:
        assert connections["scan"] == connections["orphans"]


def test_shared_scan_finds_what_each_call_rule_finds_alone(database: TestDatabase) -> None:
    """One scan of the window's calls flags, for each rule over calls, exactly its own finds."""
    craft_out_of_order(database)
    plain = Window(since=NOW - timedelta(hours=1), until=NOW)
    with database.sessions() as session:
        shared = shared_call_scan(RULES, reach(session, plain))
        assert shared is not None
        found = session.execute(shared.statement, shared.parameters).all()
        together = {
            rule.name: sorted(row[0] for row in found if row[index])
            for index, rule in enumerate(shared.rules, start=1)
        }
        alone = {rule.name: sorted(session.scalars(rule.ids(plain))) for rule in shared.rules}
    assert together == alone
    assert set(together) == {rule.name for rule in RULES if rule.entity_type == "call"}
    assert together["session_outcome_mismatch"] == [60]
    assert together["missing_direction"] == together["recent_failures"] == [80]
    assert together["inconsistent_link_status"] == [30, 70]


def test_empty_window_reaches_nothing(database: TestDatabase) -> None:
    """A window with no rows has no reach, and the rules find nothing in it."""
    play_legacy(database)
    with database.engine.begin() as connection:
        add_call(connection, "old", created_at=NOW - timedelta(days=1), appointment_made=True)
    with database.sessions() as session:
        reached = reach(session, Window(since=NOW - timedelta(hours=1), until=NOW))
        assert reached.reach == Reach(calls_from=None, appointment_calls_from=None)
        assert all(list(session.scalars(rule.ids(reached))) == [] for rule in RULES)
