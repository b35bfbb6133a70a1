"""``/api/v1`` for the monitor: consistency runs, alerts, silences and the daily report.

The monitoring service is synchronous (SQL through a unit of work), so these
routes are plain ``def`` and FastAPI runs them in its threadpool.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from bookingguard.api.auth import require_scope
from bookingguard.api.bounds import NO_NUL, VISIBLE_TEXT, MomentFilter
from bookingguard.api.problem_details import problem_responses
from bookingguard.api.v1.backends import ApiBackends, api_backends
from bookingguard.errors import BookingGuardError
from bookingguard.monitoring.admin import AlertNotFoundError
from bookingguard.monitoring.service import MonitorBusyError
from bookingguard.tokens import Principal

__all__ = ["router"]

router = APIRouter()

Severity = Literal["critical", "warning", "info"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
Backends = Annotated[ApiBackends, Depends(api_backends)]
Reader = Annotated[Principal, Depends(require_scope("read"))]
Operator = Annotated[Principal, Depends(require_scope("operate"))]
#: Ids up to 2**53 - 1: exact in every JSON number implementation (2**63 - 1 is not).
MAX_ID = 2**53 - 1
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]
RuleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]


class Totals(BaseModel):
    critical: int
    warning: int
    info: int


class RunWindow(BaseModel):
    since: datetime | None
    until: datetime


class LatestRunOut(BaseModel):
    """The most recent check run as stored in ``check_runs``."""

    run_id: int
    status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    window: RunWindow
    totals: dict[str, int]
    auto_corrected: int
    alerts_opened: int
    alerts_resolved: int
    errors: list[Any]


class ConsistencyOut(BaseModel):
    latest_run: LatestRunOut | None = Field(description="None before the first run")
    open_alerts: Totals = Field(description="Open or acknowledged alerts per severity")


class Finding(BaseModel):
    severity: Severity
    count: int
    samples: list[dict[str, Any]]


class RunOut(BaseModel):
    """The Contract's check document (as ``bookingguard check --json`` prints it)."""

    run_id: int
    started_at: datetime
    finished_at: datetime
    window: RunWindow
    findings: dict[str, Finding]
    totals: Totals
    auto_corrected: int
    alerts_opened: int
    alerts_resolved: int
    errors: list[Any]


class RunIn(BaseModel):
    scan_all: bool = Field(False, description="Scan everything instead of the recent window")
    fix: bool = Field(True, description="Auto-correct the safe cases")
    notify: bool = Field(True, description="Queue notifications for what was found")


class AlertOut(BaseModel):
    id: int
    alert_type: str
    severity: str
    entity_type: str
    entity_id: int | None
    status: str
    description: str
    fingerprint: str | None
    occurrences: int
    detected_at: datetime | None
    last_seen_at: datetime | None
    auto_corrected: bool
    acknowledged_by: str | None
    resolved_at: datetime | None
    metadata: dict[str, Any]


class AlertPageOut(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class SilenceOut(BaseModel):
    id: int
    alert_type: str | None
    entity_type: str | None
    entity_id: int | None
    author: str
    comment: str
    starts_at: datetime
    expires_at: datetime


_MATCHERS = ("alert_type", "entity_type", "entity_id")


class SilenceIn(BaseModel):
    """Mute notifications of matching alerts; at least one matcher is required."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["alert_type"]},
                {"required": ["entity_type"]},
                {"required": ["entity_id"]},
            ]
        }
    )

    comment: str = Field(min_length=1, max_length=2000, pattern=VISIBLE_TEXT)
    duration_minutes: int = Field(ge=1, le=60 * 24 * 90, description="How long it lasts")
    # Given or left out, never null: the schema says so, so "at least one" is expressible.
    alert_type: Annotated[
        RuleName | None, WithJsonSchema({"type": "string", "pattern": "^[a-z_]+$", "maxLength": 64})
    ] = None
    entity_type: Annotated[
        Annotated[str, Field(min_length=1, max_length=32, pattern=NO_NUL)] | None,
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 32, "pattern": NO_NUL}),
    ] = None
    entity_id: Annotated[
        Annotated[int, Field(ge=1, le=MAX_ID)] | None,
        WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _no_null_matchers(cls, data: object) -> object:
        if isinstance(data, dict):
            nulls = [key for key in _MATCHERS if key in data and data[key] is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: give a value or leave it out, not null")
        return data


class DailyReportOut(BaseModel):
    """The daily report (what ``bookingguard report --json`` prints)."""

    period: dict[str, Any]
    summary: dict[str, Any]
    inconsistencies_by_type: dict[str, dict[str, Any]]
    resolution: dict[str, int]
    runs: dict[str, int]
    top_issues: list[dict[str, Any]]
    labels: dict[str, str] = Field(
        description='What each number counts, by its place in the report ("section.key")'
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get(
    "/consistency",
    response_model=ConsistencyOut,
    tags=["consistency"],
    summary="Latest check run and open alerts",
)
def get_consistency(backends: Backends, _: Reader) -> dict[str, Any]:
    """The latest monitor run (any trigger) and the open alerts per severity."""
    return backends.monitoring.consistency()


@router.post(
    "/consistency/runs",
    response_model=RunOut,
    responses=problem_responses(400, 409, 413),
    tags=["consistency"],
    summary="Run a consistency check now",
)
def run_consistency_check(
    backends: Backends, _: Operator, body: Annotated[RunIn | None, Body()] = None
) -> dict[str, Any]:
    """One monitor run now: the Contract's check document (409 while another run holds the lock)."""
    options = body or RunIn()
    try:
        report = backends.monitoring.check(
            scan_all=options.scan_all, fix=options.fix, notify=options.notify, trigger="api"
        )
    except MonitorBusyError as exc:
        raise HTTPException(status_code=409, detail=exc.message) from None
    return report.to_dict()


@router.get(
    "/alerts",
    response_model=AlertPageOut,
    tags=["alerts"],
    summary="List alerts",
)
def list_alerts(
    backends: Backends,
    _: Reader,
    status: Annotated[list[AlertStatus] | None, Query()] = None,
    severity: Severity | None = None,
    type: Annotated[RuleName | None, Query(description="The rule (alert type)")] = None,
    since: Annotated[MomentFilter | None, Query(description="Detected at or after")] = None,
    cursor: Annotated[
        str | None, Query(pattern=r"^[1-9][0-9]{0,18}$", description="next_cursor of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPageOut:
    """Alerts newest first, filtered by status, severity, type and detection time."""
    # Clamped to BIGINT: a larger cursor means the same thing, "before every id".
    before_id = min(int(cursor), 2**63 - 1) if cursor is not None else None
    items, next_id = backends.monitoring.alerts_page(
        statuses=tuple(status or ()),
        alert_type=type,
        severity=severity,
        since=_aware(since) if since is not None else None,
        before_id=before_id,
        limit=limit,
    )
    return AlertPageOut(
        items=[AlertOut.model_validate(item) for item in items],
        next_cursor=str(next_id) if next_id is not None else None,
    )


def _alert_action(backends: ApiBackends, action: str, alert_id: int, by: str) -> AlertOut:
    act = backends.monitoring.acknowledge if action == "ack" else backends.monitoring.resolve
    try:
        return AlertOut.model_validate(act(alert_id, by=by))
    except AlertNotFoundError as exc:
        raise HTTPException(status_code=404, detail=exc.message) from None


@router.post(
    "/alerts/{alert_id}/ack",
    response_model=AlertOut,
    responses=problem_responses(404),
    tags=["alerts"],
    summary="Acknowledge an alert",
)
def acknowledge_alert(backends: Backends, principal: Operator, alert_id: AlertId) -> AlertOut:
    """Open → acknowledged (no more repeats); a no-op on an alert already past open."""
    return _alert_action(backends, "ack", alert_id, principal.name)


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertOut,
    responses=problem_responses(404),
    tags=["alerts"],
    summary="Resolve an alert",
)
def resolve_alert(backends: Backends, principal: Operator, alert_id: AlertId) -> AlertOut:
    """Resolve by hand; a later run that finds the entity again opens a new alert."""
    return _alert_action(backends, "resolve", alert_id, principal.name)


@router.get(
    "/silences", response_model=list[SilenceOut], tags=["alerts"], summary="List active silences"
)
def list_silences(backends: Backends, _: Reader) -> list[dict[str, Any]]:
    """Silences that have not expired, soonest expiry first."""
    return backends.monitoring.silences()


@router.post(
    "/silences",
    response_model=SilenceOut,
    status_code=201,
    tags=["alerts"],
    responses=problem_responses(400, 413),
    summary="Create a silence",
)
def create_silence(
    backends: Backends, principal: Operator, body: Annotated[SilenceIn, Body()]
) -> dict[str, Any]:
    """Mute notifications of matching alerts for a while; the author is the token's name."""
    if body.alert_type is None and body.entity_type is None and body.entity_id is None:
        raise HTTPException(
            status_code=422, detail="a silence needs alert_type, entity_type or entity_id"
        )
    try:
        return backends.monitoring.silence(
            author=principal.name,
            comment=body.comment,
            duration=timedelta(minutes=body.duration_minutes),
            alert_type=body.alert_type,
            entity_type=body.entity_type,
            entity_id=body.entity_id,
        )
    except BookingGuardError as exc:
        raise HTTPException(status_code=422, detail=exc.message) from None


@router.get(
    "/reports/daily",
    response_model=DailyReportOut,
    tags=["reports"],
    summary="The daily report",
)
def daily_report(
    backends: Backends,
    _: Reader,
    day: Annotated[
        date | None,
        Query(
            alias="date",
            description="UTC day, years 1900 to 2999 (default yesterday)",
            json_schema_extra={"pattern": r"^(19|2[0-9])[0-9]{2}-"},
        ),
    ] = None,
) -> dict[str, Any]:
    """Calls, appointments, inconsistencies and the consistency rate for one UTC day."""
    if day is not None and not 1900 <= day.year <= 2999:
        raise HTTPException(status_code=422, detail="date must be in the years 1900 to 2999")
    return backends.monitoring.daily_report(day=day)
