"""The pure state machine of one circuit: closed → open → half_open → closed.

No I/O and no clock of its own: every function takes ``now`` (epoch seconds) and
mutates a ``CircuitRecord``. ``MemoryStore`` and ``SqlStore`` run these functions
under their lock; ``RedisStore`` runs the same rules in Lua (``redis_breaker.lua``),
and one behaviour suite holds all of them to the same results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy

__all__ = [
    "AWAITING_PROBE",
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "Admission",
    "CircuitRecord",
    "CircuitStatistics",
    "CircuitStatus",
    "Transition",
    "admit",
    "adopted",
    "circuit_status",
    "force_open",
    "reset",
    "settle",
    "statistics_of",
]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
#: How an open circuit whose cooldown has run out reads: the store still says open,
#: and the next call is let through as the probe that decides.
AWAITING_PROBE = "open, next call probes"


@dataclass(frozen=True, slots=True)
class CircuitStatus:
    """A circuit as an operator should read it at one moment.

    ``label`` is ``closed``, ``half_open``, ``open``, ``open (forced)`` or
    ``AWAITING_PROBE``; ``open_until`` is the cooldown's end only while it is ahead.
    """

    label: str
    awaiting_probe: bool
    open_until: datetime | None


def circuit_status(
    *, state: str, forced_open: bool, open_until: datetime | None, now: datetime
) -> CircuitStatus:
    """What a circuit in ``state`` is at ``now``: never an "open until" in the past.

    The one place the breaker page, the API and the CLI learn it from.
    """
    if state != OPEN:
        return CircuitStatus(label=state, awaiting_probe=False, open_until=None)
    if forced_open:
        return CircuitStatus(label="open (forced)", awaiting_probe=False, open_until=None)
    if open_until is None or open_until <= now:
        return CircuitStatus(label=AWAITING_PROBE, awaiting_probe=True, open_until=None)
    return CircuitStatus(label=OPEN, awaiting_probe=False, open_until=open_until)


@dataclass
class CircuitRecord:
    """Everything a store keeps about one circuit."""

    state: str = CLOSED
    failure_count: int = 0
    success_count: int = 0
    last_failure_at: float | None = None
    opened_at: float | None = None
    closed_at: float | None = None
    open_until: float | None = None
    forced_open: bool = False
    version: int = 0
    probe_token: str | None = None
    probe_expires_at: float | None = None
    not_permitted_count: int = 0
    #: bucket start (epoch ms, as text) → [calls, failures, slow calls]
    buckets: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CircuitStatistics:
    """A snapshot of one circuit, as ``CircuitBreaker.statistics`` reports it.

    ``failure_count`` is the consecutive-failure count and keeps counting while the
    circuit is open; ``success_count`` counts successful probes since it last
    opened; the rates are percentages over the window (0 when it is empty).
    """

    circuit_key: str
    state: str
    failure_count: int
    success_count: int
    failure_rate: float
    slow_call_rate: float
    last_failure_at: datetime | None
    opened_at: datetime | None
    closed_at: datetime | None
    open_until: datetime | None
    not_permitted_count: int
    forced_open: bool
    version: int
    store: str = ""

    def status_at(self, now: datetime) -> CircuitStatus:
        """The circuit as it is at ``now`` (see ``circuit_status``)."""
        return circuit_status(
            state=self.state, forced_open=self.forced_open, open_until=self.open_until, now=now
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: datetimes as ISO 8601 text."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((name, getattr(self, name)) for name in self.__dataclass_fields__)
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, with the circuit as it stood right after it."""

    circuit_key: str
    from_state: str
    to_state: str
    reason: str
    at: datetime
    version: int
    after: CircuitStatistics
    #: The store that decided it (each store stamps its own; the history keeps it).
    decided_by: str = ""


@dataclass(frozen=True, slots=True)
class Admission:
    """A store's answer to "may this call go ahead?"."""

    permitted: bool
    state: str
    version: int
    failure_count: int
    retry_after: float = 0.0
    probe_token: str | None = None
    transitions: tuple[Transition, ...] = ()
    #: name of the store that decided; results are recorded on the same store
    store: str = ""


def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _window_totals(record: CircuitRecord) -> tuple[int, int, int]:
    calls = failures = slow = 0
    for bucket_calls, bucket_failures, bucket_slow in record.buckets.values():
        calls += bucket_calls
        failures += bucket_failures
        slow += bucket_slow
    return calls, failures, slow


def statistics_of(key: str, record: CircuitRecord, *, store: str = "") -> CircuitStatistics:
    calls, failures, slow = _window_totals(record)
    return CircuitStatistics(
        circuit_key=key,
        state=record.state,
        failure_count=record.failure_count,
        success_count=record.success_count,
        failure_rate=round(100.0 * failures / calls, 2) if calls else 0.0,
        slow_call_rate=round(100.0 * slow / calls, 2) if calls else 0.0,
        last_failure_at=to_datetime(record.last_failure_at),
        opened_at=to_datetime(record.opened_at),
        closed_at=to_datetime(record.closed_at),
        open_until=to_datetime(record.open_until),
        not_permitted_count=record.not_permitted_count,
        forced_open=record.forced_open,
        version=record.version,
        store=store,
    )


def adopted(stats: CircuitStatistics, now: float) -> CircuitRecord:
    """A record carrying over another store's open or half-open circuit in its state.

    No transition is made: the history goes on where the other store left it. A
    half-open circuit comes without its probe lease, so its next call probes at once.
    """
    half_open = stats.state == HALF_OPEN
    return CircuitRecord(
        state=HALF_OPEN if half_open else OPEN,
        failure_count=stats.failure_count,
        success_count=0,
        last_failure_at=_epoch(stats.last_failure_at),
        opened_at=_epoch(stats.opened_at),
        closed_at=_epoch(stats.closed_at),
        open_until=now if half_open else _epoch(stats.open_until),
        forced_open=stats.forced_open,
        version=stats.version,
        not_permitted_count=stats.not_permitted_count,
    )


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _move(key: str, record: CircuitRecord, to_state: str, reason: str, now: float) -> Transition:
    from_state = record.state
    record.state = to_state
    # The moment in ms, or one past the last version if that is later: versions grow
    # across stores, processes and restarts, so the history never sees one twice.
    record.version = max(record.version + 1, int(now * 1000))
    return Transition(
        circuit_key=key,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        at=datetime.fromtimestamp(now, UTC),
        version=record.version,
        after=statistics_of(key, record),
    )


def _open(
    key: str, record: CircuitRecord, policy: BreakerPolicy, now: float, reason: str
) -> Transition:
    record.opened_at = now
    record.open_until = now + policy.cooldown_seconds
    record.success_count = 0
    record.probe_token = None
    record.probe_expires_at = None
    record.buckets = {}
    return _move(key, record, OPEN, reason, now)


def admit(
    key: str, record: CircuitRecord, policy: BreakerPolicy, now: float, token: str
) -> Admission:
    """Decide whether a call may go ahead; in half-open only the lease holder may."""
    transitions: list[Transition] = []
    cooled_down = record.open_until is not None and now >= record.open_until
    if record.state == OPEN and not record.forced_open and cooled_down:
        record.success_count = 0
        transitions.append(_move(key, record, HALF_OPEN, "cooldown_elapsed", now))
    if record.state == CLOSED:
        return Admission(True, CLOSED, record.version, record.failure_count)
    if record.state == HALF_OPEN and (
        record.probe_token is None
        or record.probe_expires_at is None
        or now >= record.probe_expires_at
    ):
        record.probe_token = token
        record.probe_expires_at = now + policy.lease_seconds
        return Admission(
            True,
            HALF_OPEN,
            record.version,
            record.failure_count,
            probe_token=token,
            transitions=tuple(transitions),
        )
    record.not_permitted_count += 1
    if record.state == HALF_OPEN:
        retry_after = (record.probe_expires_at or now) - now
    elif record.forced_open:
        retry_after = policy.cooldown_seconds
    else:
        retry_after = (record.open_until or now) - now
    return Admission(
        False,
        record.state,
        record.version,
        record.failure_count,
        retry_after=max(0.0, retry_after),
        transitions=tuple(transitions),
    )


def needs_recording(admission: Admission, policy: BreakerPolicy, outcome: Outcome) -> bool:
    """False when the result cannot change the circuit: the closed-state fast path.

    A success in closed state with no failures counted, or an ignored call in
    closed state, leaves the circuit as it is unless the window is on. Skipping
    them keeps the success path to the one admission round trip.
    """
    if admission.state != CLOSED or policy.windowed:
        return True
    if outcome is Outcome.IGNORED:
        return False
    return not (outcome is Outcome.SUCCESS and admission.failure_count == 0)


def _add_to_window(
    record: CircuitRecord, policy: BreakerPolicy, now: float, outcome: Outcome, slow: bool
) -> tuple[int, int, int]:
    now_ms = int(now * 1000)
    bucket_ms = int(policy.bucket_seconds * 1000)
    horizon = now_ms - policy.window_seconds * 1000
    record.buckets = {
        start: counts for start, counts in record.buckets.items() if int(start) > horizon
    }
    if outcome is not Outcome.IGNORED:
        start = str(now_ms - now_ms % bucket_ms)
        calls, failures, slow_calls = record.buckets.get(start, (0, 0, 0))
        # A new list, never an update in place: the SQL store compares before and after.
        record.buckets[start] = [
            calls + 1,
            failures + (outcome is Outcome.FAILURE),
            slow_calls + slow,
        ]
    return _window_totals(record)


def settle(
    key: str,
    record: CircuitRecord,
    policy: BreakerPolicy,
    now: float,
    *,
    admission: Admission,
    outcome: Outcome,
    slow: bool,
) -> list[Transition]:
    """Apply a call's result; a result from an older version or an old lease is dropped."""
    if admission.version != record.version or record.state == OPEN:
        return []
    if record.state == HALF_OPEN:
        lease_lost = record.probe_expires_at is None or now >= record.probe_expires_at
        if lease_lost or admission.probe_token != record.probe_token:
            return []
        record.probe_token = None
        record.probe_expires_at = None
        if outcome is Outcome.FAILURE:
            record.failure_count += 1
            record.last_failure_at = now
            return [_open(key, record, policy, now, "probe_failed")]
        if outcome is Outcome.SUCCESS:
            record.success_count += 1
            if record.success_count >= policy.success_threshold:
                record.failure_count = 0
                record.closed_at = now
                record.open_until = None
                record.buckets = {}
                return [_move(key, record, CLOSED, "probes_succeeded", now)]
        return []
    if outcome is Outcome.FAILURE:
        record.failure_count += 1
        record.last_failure_at = now
    elif outcome is Outcome.SUCCESS:
        record.failure_count = 0
    if record.failure_count >= policy.failure_threshold:
        return [_open(key, record, policy, now, "failure_threshold")]
    if policy.windowed:
        calls, failures, slow_calls = _add_to_window(record, policy, now, outcome, slow)
        if calls >= policy.minimum_calls:
            rate = policy.failure_rate_threshold
            if rate is not None and 100.0 * failures / calls >= rate:
                return [_open(key, record, policy, now, "failure_rate")]
            if (
                policy.slow_call_seconds is not None
                and 100.0 * slow_calls / calls >= policy.slow_call_rate_threshold
            ):
                return [_open(key, record, policy, now, "slow_call_rate")]
    return []


def force_open(key: str, record: CircuitRecord, now: float) -> list[Transition]:
    """Open the circuit until ``reset``: no cooldown ends it."""
    if record.forced_open:
        return []
    record.forced_open = True
    record.opened_at = now
    record.open_until = None
    record.success_count = 0
    record.probe_token = None
    record.probe_expires_at = None
    return [_move(key, record, OPEN, "forced_open", now)]


def reset(key: str, record: CircuitRecord, now: float) -> list[Transition]:
    """Close the circuit and clear its counts (an operator's decision)."""
    was = record.state
    record.failure_count = 0
    record.success_count = 0
    record.forced_open = False
    record.open_until = None
    record.probe_token = None
    record.probe_expires_at = None
    record.buckets = {}
    if was == CLOSED:
        return []
    record.closed_at = now
    return [_move(key, record, CLOSED, "reset", now)]
