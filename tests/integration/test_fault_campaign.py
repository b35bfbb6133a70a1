"""The fault campaign's short form (``bench/faults.py``): every fault kind, no violation.

The campaign starts its own PostgreSQL (``initdb``), Redis, Cal.com stand-in and two
``serve --workers 2`` replicas, so it needs the PostgreSQL binaries and
``redis-server`` rather than the shared servers. The checker's own tests feed it
evidence with one known violation of each invariant, so a clean campaign cannot be a
checker that finds nothing.
"""

from __future__ import annotations

import glob
import shutil
from collections import Counter
from typing import Any

from bench.faults_campaign import CampaignConfig, render, run_campaign
from bench.faults_campaign.campaign import _directory
from bench.faults_campaign.checker import check
from bench.faults_campaign.driver import Answer, BreakerObservation
from bench.faults_campaign.evidence import Database, Evidence

from tests.conftest import service_unavailable

KEY = "bookingguard_idempotency_key"
CALL = "retell_call_id"


def test_short_campaign_injects_every_fault_and_finds_no_violation() -> None:
    """A few hundred operations with each fault kind at least three times: 0 violations."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("redis-server") is None:
        service_unavailable("PostgreSQL binaries or redis-server", "not installed")
    config = CampaignConfig(
        seed=14, operations=400, infra_per_kind=3, calcom_rate=0.3, min_faults=3
    )
    result = run_campaign(config)
    assert not result.shortfall, render(result)
    assert result.ok, render(result)


def test_a_campaigns_directory_is_kept_when_its_end_says_so() -> None:
    """The directory goes at the end unless ``keep()`` says otherwise then: a run that
    found a violation (decided at its end) keeps its logs and evidence."""
    found = [False]
    with _directory(lambda: found[0]) as clean:
        (clean / "journal.json").write_text("[]")
    assert not clean.exists()
    with _directory(lambda: found[0]) as failed:
        (failed / "journal.json").write_text("[]")
        found[0] = True
    try:
        assert (failed / "journal.json").read_text() == "[]"
    finally:
        shutil.rmtree(failed)


def _booking(
    uid: str, call: str, key: str, status: str = "accepted", **extra: Any
) -> dict[str, Any]:
    return {
        "id": abs(hash(uid)) % 10_000,
        "uid": uid,
        "status": status,
        "start": "2037-12-03T14:00:00.000Z",
        "metadata": {KEY: key, CALL: call},
        **extra,
    }


def _evidence(**overrides: Any) -> Evidence:
    """A consistent world: call c1 booked once (b1), linked, its webhooks stored."""
    database = Database(
        calls=[
            {
                "id": 1,
                "retell_call_id": "c1",
                "appointment_made": True,
                "appointment_link_status": "linked",
                "booking_failed": False,
                "requires_manual_processing": False,
                "session_outcome": "appointment_booked",
            }
        ],
        appointments=[
            {
                "id": 10,
                "call_id": 1,
                "calcom_booking_uid": "b1",
                "calcom_v2_booking_id": 1,
                "status": "booked",
                "idempotency_key": "k1",
                "starts_at": None,
            }
        ],
        reviews=[],
        alerts=[],
        webhook_events={"retell:call_started:c1", "calcom:BOOKING_CREATED:b1"},
        breaker_states=[{"circuit_key": "cb", "state": "closed", "version": 4}],
        transitions=[
            {"circuit_key": "cb", "from_state": "closed", "to_state": "open", "version": 2},
            {"circuit_key": "cb", "from_state": "open", "to_state": "closed", "version": 4},
        ],
    )
    booked = {"booked": True, "start": "2037-12-03T14:00:00+00:00", "message": "You're booked"}
    evidence = Evidence(
        answers=[
            Answer("book_appointment", "c1", "a", 200, booked),
            Answer("retell_webhook", "c1", "a", 204, None, {"event": "call_started"}),
            Answer(
                "calcom_webhook", None, "b", 204, None, {"trigger": "BOOKING_CREATED", "uid": "b1"}
            ),
        ],
        ledger=[_booking("b1", "c1", "k1")],
        database=database,
        observations=[BreakerObservation("cb", "open", 3, "redis", "a")],
        metric_transitions=Counter({("cb", "closed", "open"): 1}),
    )
    for name, value in overrides.items():
        setattr(evidence, name, value)
    return evidence


def _found(evidence: Evidence) -> dict[str, int]:
    return {name: len(found) for name, found in check(evidence).violations.items() if found}


def test_checker_passes_a_consistent_world() -> None:
    """The consistent evidence has no violation (so each case below is one change)."""
    assert _found(_evidence()) == {}


def test_checker_finds_a_second_create_for_one_key() -> None:
    """I2: two Cal.com bookings carrying one idempotency key (one cancelled) are a violation."""
    ledger = [_booking("b1", "c1", "k1"), _booking("b2", "c1", "k1", status="cancelled")]
    assert _found(_evidence(ledger=ledger)) == {"I2": 1}


def test_checker_finds_a_booked_answer_without_a_booking() -> None:
    """I1: told booked, but Cal.com holds nothing live for the call (and I5: the appointment
    is live locally, cancelled at Cal.com, and nobody was alerted)."""
    ledger = [_booking("b1", "c1", "k1", status="cancelled")]
    assert _found(_evidence(ledger=ledger)) == {"I1": 2, "I5": 1}


def test_checker_finds_an_unrecorded_callback_and_an_unstored_webhook() -> None:
    """I3 and I4: a call-back answer for an unflagged call, an acknowledged webhook not stored."""
    sorry = {"booked": False, "message": "A member of our team will call you back shortly."}
    answers = [
        *_evidence().answers,
        Answer("check_availability", "c1", "a", 200, sorry),
        Answer("retell_webhook", "c1", "b", 204, None, {"event": "call_ended"}),
    ]
    assert _found(_evidence(answers=answers)) == {"I3": 1, "I4": 1}


def test_checker_finds_a_transition_missing_from_the_history() -> None:
    """I6: /metrics counted a transition the history lacks, which breaks its chain too."""
    evidence = _evidence()
    evidence.database.transitions = evidence.database.transitions[1:]
    assert _found(evidence) == {"I6": 3}


def _history(*rows: tuple[str, str, int, str]) -> list[dict[str, Any]]:
    return [
        {"circuit_key": "cb", "from_state": a, "to_state": b, "version": v, "decided_by": d}
        for a, b, v, d in rows
    ]


def test_checker_follows_two_stores_deciding_at_once() -> None:
    """I6: for a moment one process is back on Redis while another still decides on SQL:
    two chains for one circuit, each going on from its own state or the one the other left;
    no violation."""
    evidence = _evidence(observations=[])
    evidence.database.transitions = _history(
        ("closed", "open", 2, "redis"),
        ("open", "half_open", 3, "sql"),
        ("open", "half_open", 4, "redis"),
        ("half_open", "closed", 5, "sql"),
        ("half_open", "open", 6, "redis"),
    )
    evidence.database.breaker_states = [{"circuit_key": "cb", "state": "open", "version": 6}]
    assert _found(evidence) == {}


def test_checker_finds_a_store_that_forgot_its_state() -> None:
    """I6: Redis restarted empty and opened the circuit again from closed: neither its own
    chain nor any other store's explains that transition."""
    evidence = _evidence(observations=[])
    evidence.database.transitions = _history(
        ("closed", "open", 2, "redis"),
        ("closed", "open", 5, "redis"),
    )
    evidence.database.breaker_states = [{"circuit_key": "cb", "state": "open", "version": 5}]
    assert _found(evidence) == {"I6": 1}


def test_checker_follows_a_store_that_took_a_state_over() -> None:
    """I6: Redis came back empty and adopted the circuit SQL had half-open; SQL then closed
    it, and Redis's probe failed from the half-open state it took: no violation."""
    evidence = _evidence(observations=[])
    evidence.database.transitions = _history(
        ("closed", "open", 2, "redis"),
        ("open", "half_open", 3, "sql"),
        ("half_open", "closed", 4, "sql"),
        ("half_open", "open", 5, "redis"),
    )
    evidence.database.breaker_states = [{"circuit_key": "cb", "state": "open", "version": 5}]
    assert _found(evidence) == {}
