"""How a circuit reads at a moment: past its cooldown it awaits its probe, with no "open until"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bookingguard.resilience import CircuitStatistics, circuit_status
from bookingguard.resilience.machine import AWAITING_PROBE

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _open(open_until: datetime | None, *, forced: bool = False) -> CircuitStatistics:
    return CircuitStatistics(
        circuit_key="appointment_booking:event_type:7",
        state="open",
        failure_count=3,
        success_count=0,
        failure_rate=0.0,
        slow_call_rate=0.0,
        last_failure_at=NOW - timedelta(seconds=30),
        opened_at=NOW - timedelta(seconds=30),
        closed_at=None,
        open_until=open_until,
        not_permitted_count=0,
        forced_open=forced,
        version=1,
    )


def test_open_during_its_cooldown_says_until_when() -> None:
    """Before the cooldown ends the circuit is open, until the cooldown's end."""
    status = _open(NOW + timedelta(seconds=10)).status_at(NOW)
    assert (status.label, status.awaiting_probe) == ("open", False)
    assert status.open_until == NOW + timedelta(seconds=10)


@pytest.mark.parametrize("past", [timedelta(0), timedelta(seconds=1), timedelta(hours=3)])
def test_open_after_its_cooldown_awaits_the_probe(past: timedelta) -> None:
    """Once the cooldown has run out, the circuit reads "open, next call probes", no time."""
    status = _open(NOW - past).status_at(NOW)
    assert status.label == AWAITING_PROBE == "open, next call probes"
    assert status.awaiting_probe is True
    assert status.open_until is None


def test_forced_open_has_no_cooldown() -> None:
    """A forced open circuit stays open (forced) whatever its recorded cooldown says."""
    status = _open(NOW - timedelta(hours=1), forced=True).status_at(NOW)
    assert (status.label, status.awaiting_probe, status.open_until) == (
        "open (forced)",
        False,
        None,
    )


@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_other_states_read_as_they_are(state: str) -> None:
    """Closed and half-open circuits read as their state, with no cooldown."""
    status = circuit_status(
        state=state, forced_open=False, open_until=NOW - timedelta(minutes=1), now=NOW
    )
    assert (status.label, status.awaiting_probe, status.open_until) == (state, False, None)
