"""The pure state machine, driven by a hand-moved clock."""

from __future__ import annotations

from bookingguard.resilience import machine
from bookingguard.resilience.machine import Admission, CircuitRecord
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy

KEY = "appointment_booking:event_type:1"
POLICY = BreakerPolicy(failure_threshold=3, cooldown_seconds=30, success_threshold=2)


def fail(record: CircuitRecord, now: float, policy: BreakerPolicy = POLICY) -> list[str]:
    admission = machine.admit(KEY, record, policy, now, "t")
    return [
        t.reason
        for t in machine.settle(
            KEY, record, policy, now, admission=admission, outcome=Outcome.FAILURE, slow=False
        )
    ]


def succeed(record: CircuitRecord, admission: Admission, now: float) -> list[str]:
    transitions = machine.settle(
        KEY, record, POLICY, now, admission=admission, outcome=Outcome.SUCCESS, slow=False
    )
    return [t.to_state for t in transitions]


def test_opens_on_third_failure_with_cooldown_from_the_clock() -> None:
    """The third consecutive failure opens the circuit until now + cooldown."""
    record = CircuitRecord()
    assert fail(record, 100.0) == []
    assert fail(record, 101.0) == []
    assert fail(record, 102.0) == ["failure_threshold"]
    assert (record.state, record.opened_at, record.open_until) == ("open", 102.0, 132.0)
    assert record.failure_count == 3


def test_rejects_until_the_cooldown_ends_then_admits_one_probe() -> None:
    """Open rejects with the remaining cooldown; at its end one caller gets the lease."""
    record = CircuitRecord()
    for now in (0.0, 1.0, 2.0):
        fail(record, now)
    rejected = machine.admit(KEY, record, POLICY, 12.0, "a")
    assert (rejected.permitted, rejected.retry_after) == (False, 20.0)
    probe = machine.admit(KEY, record, POLICY, 32.0, "b")
    assert (probe.permitted, probe.state, probe.probe_token) == (True, "half_open", "b")
    assert [t.reason for t in probe.transitions] == ["cooldown_elapsed"]
    second = machine.admit(KEY, record, POLICY, 32.5, "c")
    assert not second.permitted
    assert second.retry_after == POLICY.lease_seconds - 0.5
    assert record.not_permitted_count == 2


def test_two_successful_probes_close() -> None:
    """success_threshold probes in a row close the circuit."""
    record = CircuitRecord()
    for now in (0.0, 1.0, 2.0):
        fail(record, now)
    first = machine.admit(KEY, record, POLICY, 40.0, "a")
    assert succeed(record, first, 40.1) == []
    second = machine.admit(KEY, record, POLICY, 40.2, "b")
    assert succeed(record, second, 40.3) == ["closed"]
    assert (record.state, record.failure_count, record.closed_at) == ("closed", 0, 40.3)


def test_an_open_circuit_never_closes_by_itself() -> None:
    """However long it waits, an open circuit only moves to half-open, never to closed."""
    record = CircuitRecord()
    for now in (0.0, 1.0, 2.0):
        fail(record, now)
    admission = machine.admit(KEY, record, POLICY, 10 * 86_400.0, "late")
    assert (admission.state, record.state) == ("half_open", "half_open")


def test_forced_open_ignores_the_cooldown() -> None:
    """A forced-open circuit rejects even long after its cooldown."""
    record = CircuitRecord()
    assert [t.reason for t in machine.force_open(KEY, record, 0.0)] == ["forced_open"]
    assert machine.force_open(KEY, record, 1.0) == []
    assert not machine.admit(KEY, record, POLICY, 1e6, "x").permitted
    assert [t.to_state for t in machine.reset(KEY, record, 2e6)] == ["closed"]


def test_closed_fast_path_skips_recording_only_when_nothing_changes() -> None:
    """Only a success with no failures counted, or an ignored call, skips the store."""
    clean = Admission(True, "closed", 0, 0)
    dirty = Admission(True, "closed", 0, 1)
    windowed = BreakerPolicy(failure_rate_threshold=50)
    assert not machine.needs_recording(clean, POLICY, Outcome.SUCCESS)
    assert not machine.needs_recording(dirty, POLICY, Outcome.IGNORED)
    assert machine.needs_recording(dirty, POLICY, Outcome.SUCCESS)
    assert machine.needs_recording(clean, POLICY, Outcome.FAILURE)
    assert machine.needs_recording(clean, windowed, Outcome.SUCCESS)


def test_window_forgets_calls_older_than_the_window() -> None:
    """Failures that slid out of the window no longer count towards the rate."""
    policy = BreakerPolicy(
        failure_threshold=100, failure_rate_threshold=50, window_seconds=60, minimum_calls=3
    )
    record = CircuitRecord()
    assert fail(record, 0.0, policy) == []
    assert fail(record, 1.0, policy) == []
    admission = machine.admit(KEY, record, policy, 100.0, "t")
    machine.settle(
        KEY, record, policy, 100.0, admission=admission, outcome=Outcome.SUCCESS, slow=False
    )
    stats = machine.statistics_of(KEY, record)
    assert (record.state, stats.failure_rate) == ("closed", 0.0)
