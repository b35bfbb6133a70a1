"""The campaign's fault schedule, all drawn from one seed.

Cal.com faults are chosen per route by request number (the ``n``-th ``POST
/v2/bookings`` of the run gets the same fault on every run with that seed), so the
stand-in serves them without any clock. Infrastructure faults (a replica killed,
Redis killed, every PostgreSQL connection terminated, PostgreSQL restarted) are
placed by operation number: the ``k``-th of each kind fires once the driver has
sent that many operations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tests.support.calcom_standin import Fault

__all__ = [
    "CALCOM_FAULT_KINDS",
    "INFRA_FAULT_KINDS",
    "CalcomFaultPlan",
    "FaultSchedule",
    "InfraFault",
]

#: The Cal.com stand-in's fault kinds the campaign injects, as it reports them.
CALCOM_FAULT_KINDS = ("status", "rate_limit", "hang", "lost_response", "latency")
INFRA_FAULT_KINDS = ("replica_kill", "redis_kill", "pg_terminate", "pg_restart")
#: Requests that change a booking: the only ones whose answer can be lost after the change.
_WRITES = ("create", "reschedule", "cancel")
_WRITE_TURN = (
    "status",
    "lost_response",
    "rate_limit",
    "lost_response",
    "hang",
    "lost_response",
    "latency",
)
_READ_TURN = ("status", "rate_limit", "hang", "latency")


@dataclass(frozen=True)
class InfraFault:
    """One infrastructure fault, fired once ``at_operation`` operations were sent."""

    at_operation: int
    kind: str
    #: Which replica a ``replica_kill`` takes (an index into the replicas).
    target: int = 0
    #: How long a killed Redis or a stopped PostgreSQL stays down before it restarts.
    down_seconds: float = 0.0


@dataclass
class CalcomFaultPlan:
    """The stand-in's plan: ``plan(route, n)`` is the fault of the ``n``-th request on a route.

    Whether a request is faulted is drawn from the seed for (route, n), so the faults
    one route meets do not depend on how many requests another route had; the faulted
    requests of a route take the kinds in turn, so every kind comes up early and
    evenly. Writes take a lost answer three times per turn: it is the fault that can double
    a booking. ``timeout_seconds`` is the client's read timeout: a hang lasts past it,
    a slow answer stays under it.
    """

    seed: int
    rate: float
    timeout_seconds: float
    #: Per route, how many of its requests 1..len were faulted (a prefix count).
    _faulted: dict[str, list[int]] = field(default_factory=dict)

    def __call__(self, route: str, number: int) -> Fault | None:
        if route == "unknown" or not self._hit(route, number):
            return None
        counts = self._faulted.setdefault(route, [0])
        while len(counts) < number:
            counts.append(counts[-1] + self._hit(route, len(counts)))
        turn = _WRITE_TURN if route in _WRITES else _READ_TURN
        kind = turn[counts[number - 1] % len(turn)]
        return self._fault(kind, random.Random(f"{self.seed}:calcom:{route}:{number}:kind"))

    def _hit(self, route: str, number: int) -> bool:
        return random.Random(f"{self.seed}:calcom:{route}:{number}").random() < self.rate

    def _fault(self, kind: str, rng: random.Random) -> Fault:
        past_timeout = self.timeout_seconds + 0.5
        if kind == "status":
            return Fault("status", status=rng.choice((500, 502, 503)))
        if kind == "rate_limit":
            return Fault("rate_limit", seconds=rng.choice((0.2, 0.5, 1.0)))
        if kind == "hang":
            return Fault("hang", seconds=past_timeout)
        if kind == "lost_response":
            hang = rng.random() < 0.5
            return Fault("lost_response", seconds=past_timeout if hang else 0.0, hang=hang)
        return Fault("latency", seconds=round(rng.uniform(0.1, self.timeout_seconds * 0.6), 3))


@dataclass(frozen=True)
class FaultSchedule:
    """The Cal.com plan and the infrastructure faults of one campaign."""

    calcom: CalcomFaultPlan
    infra: tuple[InfraFault, ...]

    @classmethod
    def build(
        cls,
        seed: int,
        *,
        operations: int,
        infra_per_kind: int,
        calcom_rate: float,
        timeout_seconds: float,
        replicas: int = 2,
    ) -> FaultSchedule:
        """``infra_per_kind`` faults of each infrastructure kind, spread over the middle of
        the run (from 5 % to 90 % of ``operations``), kinds interleaved."""
        rng = random.Random(f"{seed}:infra")
        low, high = max(1, operations // 20), max(2, operations * 9 // 10)
        faults = [
            InfraFault(
                rng.randint(low, high),
                kind,
                rng.randrange(replicas),
                round(rng.uniform(0.2, 1.5), 2),
            )
            for kind in INFRA_FAULT_KINDS
            for _ in range(infra_per_kind)
        ]
        faults.sort(key=lambda fault: (fault.at_operation, fault.kind))
        plan = CalcomFaultPlan(seed=seed, rate=calcom_rate, timeout_seconds=timeout_seconds)
        return cls(calcom=plan, infra=tuple(faults))
