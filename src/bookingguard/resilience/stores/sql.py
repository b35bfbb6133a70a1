"""``SqlStore``: circuits in ``circuit_breaker_states``, shared through the database.

The embedded default's shared store (SQLite file) and Redis's fallback in
production (PostgreSQL). Every change runs the pure state machine inside one
transaction that holds the circuit's row: ``SELECT … FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite (SQLite ignores ``FOR UPDATE``; PostgreSQL ignores
the SQLite begin option). Transitions are written to the history in the same
transaction. A closed circuit is admitted by a plain read, so a successful call
in closed state writes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RowMapping, Table, insert, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bookingguard.db.engine import SQLITE_BEGIN_OPTION
from bookingguard.db.models import CircuitBreakerState, CircuitBreakerTransition
from bookingguard.resilience import machine
from bookingguard.resilience.errors import StoreUnavailableError
from bookingguard.resilience.machine import (
    Admission,
    CircuitRecord,
    CircuitStatistics,
    Transition,
)
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy

__all__ = ["SqlStore", "write_transitions"]

T = TypeVar("T")
_states: Table = CircuitBreakerState.__table__  # type: ignore[assignment]
_transitions: Table = CircuitBreakerTransition.__table__  # type: ignore[assignment]
_OUTAGES = (OperationalError, InterfaceError, PoolTimeoutError)


class SqlStore:
    """Circuits as rows; every change one locked transaction (see the module docstring)."""

    durable = True

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        name: str = "sql",
        owns_engine: bool = False,
    ) -> None:
        self.name = name
        self.engine = engine
        self._engine = engine
        self._clock = clock
        self._owns_engine = owns_engine

    async def _call(self, function: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(function)
        except _OUTAGES as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0:1]
            raise StoreUnavailableError(self.name, reason[0] if reason else "no answer") from exc

    def _read(self, key: str) -> CircuitRecord | None:
        with self._engine.connect() as connection:
            row = (
                connection.execute(select(_states).where(_states.c.circuit_key == key))
                .mappings()
                .first()
            )
        return None if row is None else _record(row)

    def _locked(self, key: str, step: Callable[[CircuitRecord], T]) -> T:
        """Run ``step`` on the circuit's record under its row lock and write back the result."""
        for attempt in range(2):
            try:
                return self._locked_once(key, step)
            except IntegrityError:
                # Two processes inserted the first row at once; the loser reads the winner's.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _locked_once(self, key: str, step: Callable[[CircuitRecord], T]) -> T:
        with self._engine.connect() as connection:
            connection = connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with connection.begin():
                row = (
                    connection.execute(
                        select(_states).where(_states.c.circuit_key == key).with_for_update()
                    )
                    .mappings()
                    .first()
                )
                record = CircuitRecord() if row is None else _record(row)
                before = _columns(record)
                result = step(record)
                after = _columns(record)
                if row is None:
                    connection.execute(insert(_states).values(circuit_key=key, **after))
                elif after != before:
                    connection.execute(
                        update(_states).where(_states.c.circuit_key == key).values(**after)
                    )
                decided = [replace(t, decided_by=self.name) for t in _transitions_of(result)]
                _insert_transitions(connection, decided)
                return result

    async def acquire(self, key: str, policy: BreakerPolicy) -> Admission:
        record = await self._call(lambda: self._read(key))
        if record is None or record.state == machine.CLOSED:
            version = record.version if record else 0
            failures = record.failure_count if record else 0
            return Admission(True, machine.CLOSED, version, failures, store=self.name)
        token = uuid.uuid4().hex
        admission = await self._call(
            lambda: self._locked(
                key, lambda rec: machine.admit(key, rec, policy, self._clock(), token)
            )
        )
        return replace(admission, store=self.name)

    async def record(
        self, key: str, policy: BreakerPolicy, admission: Admission, outcome: Outcome, *, slow: bool
    ) -> list[Transition]:
        return await self._call(
            lambda: self._locked(
                key,
                lambda rec: machine.settle(
                    key, rec, policy, self._clock(), admission=admission, outcome=outcome, slow=slow
                ),
            )
        )

    async def force_open(self, key: str) -> list[Transition]:
        return await self._call(
            lambda: self._locked(key, lambda rec: machine.force_open(key, rec, self._clock()))
        )

    async def reset(self, key: str) -> list[Transition]:
        return await self._call(
            lambda: self._locked(key, lambda rec: machine.reset(key, rec, self._clock()))
        )

    async def statistics(self, key: str) -> CircuitStatistics:
        record = await self._call(lambda: self._read(key))
        return machine.statistics_of(key, record or CircuitRecord(), store=self.name)

    async def list_circuits(self) -> list[CircuitStatistics]:
        def read_all() -> list[CircuitStatistics]:
            with self._engine.connect() as connection:
                rows = connection.execute(select(_states).order_by(_states.c.circuit_key))
                return [
                    machine.statistics_of(row.circuit_key, _record(row), store=self.name)
                    for row in rows.mappings()
                ]

        return await self._call(read_all)

    async def adopt(self, circuits: list[CircuitStatistics]) -> int:
        def take(stats: CircuitStatistics) -> bool:
            def step(record: CircuitRecord) -> bool:
                if record.version or record.state != machine.CLOSED or record.failure_count:
                    return False
                vars(record).update(vars(machine.adopted(stats, self._clock())))
                return True

            return self._locked(stats.circuit_key, step)

        taken = 0
        for stats in circuits:
            taken += await self._call(functools.partial(take, stats))
        return taken

    async def aclose(self) -> None:
        if self._owns_engine:
            self._engine.dispose()


def _transitions_of(result: object) -> list[Transition]:
    """The transitions a step produced: an ``Admission``'s, or the list a step returned."""
    if isinstance(result, Admission):
        return list(result.transitions)
    if isinstance(result, list):
        return [item for item in result if isinstance(item, Transition)]
    return []


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _moment(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _record(row: RowMapping) -> CircuitRecord:
    window: dict[str, Any] = row["window"] or {}
    return CircuitRecord(
        state=row["state"],
        failure_count=row["failure_count"],
        success_count=row["success_count"],
        last_failure_at=_epoch(row["last_failure_at"]),
        opened_at=_epoch(row["opened_at"]),
        closed_at=_epoch(row["closed_at"]),
        open_until=_epoch(row["open_until"]),
        forced_open=row["forced_open"],
        version=row["version"],
        probe_token=row["probe_token"],
        probe_expires_at=_epoch(row["probe_expires_at"]),
        not_permitted_count=int(window.get("not_permitted", 0)),
        buckets=dict(window.get("buckets", {})),
    )


def _columns(record: CircuitRecord) -> dict[str, Any]:
    return {
        "state": record.state,
        "failure_count": record.failure_count,
        "success_count": record.success_count,
        "last_failure_at": _moment(record.last_failure_at),
        "opened_at": _moment(record.opened_at),
        "closed_at": _moment(record.closed_at),
        "open_until": _moment(record.open_until),
        "forced_open": record.forced_open,
        "version": record.version,
        "probe_token": record.probe_token,
        "probe_expires_at": _moment(record.probe_expires_at),
        "window": {"buckets": record.buckets, "not_permitted": record.not_permitted_count},
    }


def _insert_transitions(connection: Connection, transitions: list[Transition]) -> None:
    if transitions:
        connection.execute(
            insert(_transitions),
            [
                {
                    "circuit_key": t.circuit_key,
                    "from_state": t.from_state,
                    "to_state": t.to_state,
                    "reason": t.reason,
                    "at": t.at,
                    "version": t.version,
                    "decided_by": t.decided_by or None,
                }
                for t in transitions
            ],
        )


def write_transitions(engine: Engine, transitions: list[Transition]) -> None:
    """Audit transitions decided by another store, idempotently.

    The state row takes the circuit as it stood after the last transition (so the
    SQL store, next in the chain, starts from it if Redis goes away); each history
    row is inserted once, a repeat of (circuit_key, version) is skipped.
    """
    try:
        _write_transitions_once(engine, transitions)
    except IntegrityError:
        # Another process created the circuit's row first; now it exists, update it.
        _write_transitions_once(engine, transitions)


def _write_transitions_once(engine: Engine, transitions: list[Transition]) -> None:
    with engine.connect() as connection:
        connection = connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            for transition in transitions:
                _upsert_state(connection, transition)
                with connection.begin_nested() as savepoint:
                    try:
                        _insert_transitions(connection, [transition])
                    except IntegrityError:
                        savepoint.rollback()


def _upsert_state(connection: Connection, transition: Transition) -> None:
    stats = transition.after
    values: dict[str, Any] = {
        "state": stats.state,
        "failure_count": stats.failure_count,
        "success_count": stats.success_count,
        "last_failure_at": stats.last_failure_at,
        "opened_at": stats.opened_at,
        "closed_at": stats.closed_at,
        "open_until": stats.open_until,
        "forced_open": stats.forced_open,
        "version": transition.version,
        "probe_token": None,
        "probe_expires_at": None,
        "window": {"buckets": {}, "not_permitted": stats.not_permitted_count},
    }
    current = connection.execute(
        select(_states.c.version)
        .where(_states.c.circuit_key == transition.circuit_key)
        .with_for_update()
    ).scalar()
    if current is None:
        connection.execute(insert(_states).values(circuit_key=transition.circuit_key, **values))
    elif current <= transition.version:
        connection.execute(
            update(_states).where(_states.c.circuit_key == transition.circuit_key).values(**values)
        )
