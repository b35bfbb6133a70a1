"""What every breaker store offers: atomic admission, recording and control of circuits."""

from __future__ import annotations

from typing import Protocol

from bookingguard.resilience.machine import Admission, CircuitStatistics, Transition
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy

__all__ = ["BreakerStore"]


class BreakerStore(Protocol):
    """Holds circuits; every method is one atomic step across all users of the store.

    A store that cannot answer raises ``StoreUnavailableError`` (and nothing else for
    an outage), so ``FallbackStore`` can move to the next one.
    """

    name: str
    #: True when the store writes transitions to the database itself (no audit needed)
    durable: bool

    async def acquire(self, key: str, policy: BreakerPolicy) -> Admission:
        """Admit or reject one call, taking the half-open lease if it is free."""
        ...

    async def record(
        self, key: str, policy: BreakerPolicy, admission: Admission, outcome: Outcome, *, slow: bool
    ) -> list[Transition]:
        """Apply the result of an admitted call; stale results change nothing."""
        ...

    async def statistics(self, key: str) -> CircuitStatistics:
        """The circuit as it stands (closed with zero counts if never seen)."""
        ...

    async def force_open(self, key: str) -> list[Transition]:
        """Open the circuit until ``reset``."""
        ...

    async def reset(self, key: str) -> list[Transition]:
        """Close the circuit and clear its counts."""
        ...

    async def list_circuits(self) -> list[CircuitStatistics]:
        """Every circuit this store knows, sorted by key."""
        ...

    async def adopt(self, circuits: list[CircuitStatistics]) -> int:
        """Take over open circuits from another store, for keys this store has no state for.

        Called when the chain returns to this store, so a Redis that restarted empty
        does not close circuits that opened while it was away. Returns how many it took.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
