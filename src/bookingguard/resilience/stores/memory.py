"""``MemoryStore``: circuits in a dict, for one process (the last link of the chain)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

from bookingguard.resilience import machine
from bookingguard.resilience.machine import Admission, CircuitRecord, CircuitStatistics, Transition
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy

__all__ = ["MemoryStore"]


class MemoryStore:
    """One process's circuits.

    Asyncio-safe without a lock: no method awaits between reading and writing a
    record, so each runs to completion on the event loop before another starts.
    Not shared between processes or event loops in different threads.
    """

    durable = False

    def __init__(self, *, clock: Callable[[], float] = time.time, name: str = "memory") -> None:
        self.name = name
        self._clock = clock
        #: One process's memory: its transitions are its own chain in the history.
        self.decider = f"{name}:{socket.gethostname()}:{os.getpid()}"[:64]
        self._records: dict[str, CircuitRecord] = {}
        # The answer for a closed circuit, until the next change to it: the hot path.
        self._closed: dict[str, Admission] = {}

    def _stamped(self, transitions: Iterable[Transition]) -> tuple[Transition, ...]:
        """``transitions`` as this process's memory decided them."""
        return tuple(replace(t, decided_by=self.decider) for t in transitions)

    def _record_of(self, key: str) -> CircuitRecord:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = CircuitRecord()
        return record

    async def acquire(self, key: str, policy: BreakerPolicy) -> Admission:
        cached = self._closed.get(key)
        if cached is not None:
            return cached
        record = self._records.get(key)
        if record is None or record.state == machine.CLOSED:
            admission = Admission(
                True,
                machine.CLOSED,
                record.version if record else 0,
                record.failure_count if record else 0,
                store=self.name,
            )
            self._closed[key] = admission
            return admission
        admission = machine.admit(key, record, policy, self._clock(), uuid.uuid4().hex)
        return replace(admission, store=self.name, transitions=self._stamped(admission.transitions))

    async def record(
        self, key: str, policy: BreakerPolicy, admission: Admission, outcome: Outcome, *, slow: bool
    ) -> list[Transition]:
        self._closed.pop(key, None)
        return list(
            self._stamped(
                machine.settle(
                    key,
                    self._record_of(key),
                    policy,
                    self._clock(),
                    admission=admission,
                    outcome=outcome,
                    slow=slow,
                )
            )
        )

    async def statistics(self, key: str) -> CircuitStatistics:
        record = self._records.get(key) or CircuitRecord()
        return machine.statistics_of(key, record, store=self.name)

    async def force_open(self, key: str) -> list[Transition]:
        self._closed.pop(key, None)
        return list(self._stamped(machine.force_open(key, self._record_of(key), self._clock())))

    async def reset(self, key: str) -> list[Transition]:
        self._closed.pop(key, None)
        return list(self._stamped(machine.reset(key, self._record_of(key), self._clock())))

    async def list_circuits(self) -> list[CircuitStatistics]:
        return [
            machine.statistics_of(key, self._records[key], store=self.name)
            for key in sorted(self._records)
        ]

    async def adopt(self, circuits: list[CircuitStatistics]) -> int:
        taken = 0
        for stats in circuits:
            if stats.circuit_key not in self._records:
                self._records[stats.circuit_key] = machine.adopted(stats, self._clock())
                taken += 1
        return taken

    async def aclose(self) -> None:
        return None
