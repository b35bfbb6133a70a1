"""``/api/v1/circuit-breakers``: list, show, reset and force-open circuits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from bookingguard.api.auth import require_scope
from bookingguard.api.context import OperatorContext, operator_context
from bookingguard.api.problem_details import problem_responses
from bookingguard.api.v1.backends import ApiBackends, api_backends
from bookingguard.resilience import CircuitBreaker
from bookingguard.resilience.machine import CircuitStatistics
from bookingguard.tokens import Principal

__all__ = ["router"]

router = APIRouter(prefix="/circuit-breakers", tags=["circuit breakers"])

Backends = Annotated[ApiBackends, Depends(api_backends)]
#: Its clock says what "now" is when a cooldown is asked whether it has run out.
Context = Annotated[OperatorContext, Depends(operator_context)]
Reader = Annotated[Principal, Depends(require_scope("read"))]
Operator = Annotated[Principal, Depends(require_scope("operate"))]
CircuitKey = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="e.g. appointment_booking:event_type:42",
    ),
]


class CircuitOut(BaseModel):
    """One circuit as its store sees it now.

    ``status`` is how it reads at this moment: an open circuit whose cooldown has
    run out is ``open, next call probes`` (``awaiting_probe``), and ``open_until``
    is given only while the cooldown is still ahead.
    """

    circuit_key: str
    state: str
    status: str
    awaiting_probe: bool
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
    store: str


def _out(stats: CircuitStatistics, context: OperatorContext) -> CircuitOut:
    status = stats.status_at(context.clock())
    return CircuitOut.model_validate(
        {
            **{name: getattr(stats, name) for name in stats.__dataclass_fields__},
            "status": status.label,
            "awaiting_probe": status.awaiting_probe,
            "open_until": status.open_until,
        }
    )


async def _known(breaker: CircuitBreaker, key: str) -> None:
    if key not in {circuit.circuit_key for circuit in await breaker.list_circuits()}:
        raise HTTPException(status_code=404, detail=f"no circuit {key!r}")


@router.get("", response_model=list[CircuitOut], summary="List circuits")
async def list_circuits(backends: Backends, context: Context, _: Reader) -> list[CircuitOut]:
    """Every circuit the active store knows, sorted by key."""
    return [_out(stats, context) for stats in await backends.breaker.list_circuits()]


@router.get(
    "/{key}", response_model=CircuitOut, responses=problem_responses(404), summary="Show a circuit"
)
async def show_circuit(
    backends: Backends, context: Context, _: Reader, key: CircuitKey
) -> CircuitOut:
    """The circuit's state, counts and rates."""
    await _known(backends.breaker, key)
    return _out(await backends.breaker.statistics(key), context)


@router.post(
    "/{key}/reset",
    response_model=CircuitOut,
    responses=problem_responses(404),
    summary="Reset a circuit",
)
async def reset_circuit(
    backends: Backends, context: Context, _: Operator, key: CircuitKey
) -> CircuitOut:
    """Close the circuit and clear its counts."""
    await _known(backends.breaker, key)
    return _out(await backends.breaker.reset(key), context)


@router.post(
    "/{key}/open",
    response_model=CircuitOut,
    responses=problem_responses(404),
    summary="Force a circuit open",
)
async def open_circuit(
    backends: Backends, context: Context, _: Operator, key: CircuitKey
) -> CircuitOut:
    """Open the circuit until it is reset (no cooldown ends it)."""
    await _known(backends.breaker, key)
    return _out(await backends.breaker.force_open(key), context)
