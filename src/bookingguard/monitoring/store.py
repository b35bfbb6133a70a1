"""Storing a rule's findings as alerts: dedup by fingerprint, bump, open, fix, resolve.

Every step is one set-based statement per rule and run, whatever the number of
findings. One open alert per fingerprint is kept because only one writer runs the
monitor at a time (the scheduler's lock); the statements never look row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    TextualSelect,
    Update,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from bookingguard.db.alerts import fingerprint, json_object
from bookingguard.db.models import ConsistencyAlert
from bookingguard.db.monitor_queries import IdLists, bound_ids, id_lists
from bookingguard.db.types import JSONDocument, UTCDateTime
from bookingguard.monitoring.rules import Rule

__all__ = [
    "OPEN",
    "StoreOutcome",
    "bump_found",
    "open_alert_counts",
    "resolve_gone",
    "store_listed",
    "store_rule",
]

alerts: Table = ConsistencyAlert.__table__  # type: ignore[assignment]
OPEN = ("open", "acknowledged")


@dataclass(frozen=True)
class StoreOutcome:
    opened: int
    bumped: int
    resolved: tuple[str, ...]
    corrected: int
    #: Entities whose alert this run opened (what gets filed for review).
    opened_ids: tuple[int, ...] = ()


def _open_alert_for(
    alert_type: str, entity_type: str, entity_id: ColumnElement[Any]
) -> ColumnElement[bool]:
    return exists(
        select(literal(1)).where(
            alerts.c.entity_type == entity_type,
            alerts.c.entity_id == entity_id,
            alerts.c.alert_type == alert_type,
            alerts.c.status.in_(OPEN),
        )
    )


def _selectable(
    session: Session, ids: Select[tuple[int]] | Sequence[int]
) -> Select[tuple[int]] | TextualSelect:
    """``ids`` as a select of one column: a listed ``ids`` bound as one parameter."""
    return ids if isinstance(ids, Select) else bound_ids(session, ids)


def _among(
    session: Session, column: ColumnElement[Any], ids: Select[tuple[int]] | Sequence[int]
) -> ColumnElement[bool]:
    """``column IN ids``, a listed ``ids`` bound as one parameter."""
    return column.in_(_selectable(session, ids))


def _bump(
    session: Session,
    alert_type: str,
    entity_type: str,
    ids: Select[tuple[int]] | list[int],
    now: datetime,
) -> set[int]:
    """Bump the open alerts of these entities; returns the entities that had one."""
    if isinstance(ids, list):
        return bump_found(session, [(alert_type, entity_type, ids)], now=now)[alert_type]
    statement = _bump_statement([(alert_type, entity_type, ids)])
    return _bumped(session.execute(statement, {"now": now})).get(alert_type, set())


def bump_found(
    session: Session, found: Sequence[tuple[str, str, Sequence[int]]], *, now: datetime
) -> dict[str, set[int]]:
    """Bump the open alerts of several rules' findings in one statement.

    ``found`` holds (alert type, entity type, ids) for each rule; returns, per alert type,
    the entities that had an open alert. The statement is built once for a set of rules:
    only its parameters change from run to run.
    """
    lists = id_lists(session)
    statement = _listed_bump_statement(
        lists, tuple((alert_type, entity_type) for alert_type, entity_type, _ in found)
    )
    parameters: dict[str, Any] = {"now": now}
    for index, (_, _, ids) in enumerate(found):
        parameters[f"ids_{index}"] = lists.ids_value(ids)
    bumped = _bumped(session.execute(statement, parameters))
    return {alert_type: bumped.get(alert_type, set()) for alert_type, _, _ in found}


@lru_cache(maxsize=32)
def _listed_bump_statement(lists: IdLists, kinds: tuple[tuple[str, str], ...]) -> Update:
    return _bump_statement(
        [
            (alert_type, entity_type, lists.ids_parameter(f"ids_{index}"))
            for index, (alert_type, entity_type) in enumerate(kinds)
        ]
    )


def _bump_statement(
    found: Sequence[tuple[str, str, Select[tuple[int]] | TextualSelect]],
) -> Update:
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(alerts)
        .where(
            alerts.c.status.in_(OPEN),
            or_(
                *(
                    and_(
                        alerts.c.entity_type == entity_type,
                        alerts.c.alert_type == alert_type,
                        alerts.c.entity_id.in_(ids),
                    )
                    for alert_type, entity_type, ids in found
                )
            ),
        )
        .values(occurrences=alerts.c.occurrences + 1, last_seen_at=now, updated_at=now)
        .returning(alerts.c.alert_type, alerts.c.entity_id)
    )


def _bumped(result: Result[str, int]) -> dict[str, set[int]]:
    bumped: dict[str, set[int]] = {}
    for alert_type, entity_id in result.all():
        bumped.setdefault(str(alert_type), set()).add(int(entity_id))
    return bumped


def _rowcount(result: Result[Any]) -> int:
    return max(cast(CursorResult[Any], result).rowcount, 0)


def open_alert_counts(session: Session, alert_types: Sequence[str]) -> dict[str, int]:
    """How many alerts of each of these types are open (a type with none is left out)."""
    rows = session.execute(_open_counts_statement(tuple(alert_types)))
    return {str(alert_type): int(count) for alert_type, count in rows}


@lru_cache(maxsize=32)
def _open_counts_statement(alert_types: tuple[str, ...]) -> Select[Any]:
    return (
        select(alerts.c.alert_type, func.count())
        .where(alerts.c.alert_type.in_(alert_types), alerts.c.status.in_(OPEN))
        .group_by(alerts.c.alert_type)
    )


def resolve_gone(
    session: Session,
    *,
    alert_type: str,
    still_holds: ColumnElement[bool],
    now: datetime,
    found: Sequence[int] = (),
) -> tuple[str, ...]:
    """Resolve open alerts of ``alert_type`` for which ``still_holds`` is false.

    The entities ``found`` by this run hold by definition and are not tested again:
    with ten thousand findings that was ten thousand probes of the entity table. One
    statement: it resolves and returns the fingerprints.
    """
    conditions = [alerts.c.alert_type == alert_type, alerts.c.status.in_(OPEN), ~still_holds]
    if found:
        conditions.append(
            or_(alerts.c.entity_id.is_(None), ~_among(session, alerts.c.entity_id, found))
        )
    result = session.execute(
        update(alerts)
        .where(*conditions)
        .values(status="resolved", resolved_at=now, updated_at=now)
        .returning(alerts.c.fingerprint)
    )
    return tuple(str(fingerprint) for fingerprint in result.scalars())


def store_rule(
    session: Session,
    rule: Rule,
    *,
    ids: Select[tuple[int]] | list[int],
    fix: bool,
    now: datetime,
    any_open: bool = True,
    bumped: set[int] | None = None,
) -> StoreOutcome:
    """Write one rule's findings: ``ids`` lists them, or selects them when there are many.

    ``any_open`` False says no alert of the rule is open: nothing to bump or close.
    ``bumped`` lists the entities whose open alert the caller bumped already (with
    ``bump_found``, for several rules at once); None bumps them here.
    """
    table = rule.table
    corrects = fix and rule.fix is not None
    if bumped is None:
        bumped = set()
        if any_open and not corrects:
            bumped = _bump(session, rule.name, rule.entity_type, ids, now)
    new_ids: Select[tuple[int]] | list[int] = ids
    if isinstance(ids, list):
        # Steady state: every finding already had an open alert, nothing to insert.
        new_ids = [entity_id for entity_id in ids if entity_id not in bumped]
        if not new_ids:
            return StoreOutcome(opened=0, bumped=len(bumped), resolved=(), corrected=0)
    if corrects:
        found = select(table).where(_among(session, table.c.id, new_ids)).subquery()
    else:
        # The ids alone: joining the entity table back cost an index probe per finding.
        found = _selectable(session, new_ids).subquery()
    entity_id = found.c.id
    key = literal(f"{rule.name}:{rule.entity_type}:") + sql_cast(entity_id, String)
    columns: dict[str, ColumnElement[Any]] = {
        "alert_type": literal(rule.name),
        "severity": literal(rule.severity),
        "entity_type": literal(rule.entity_type),
        "entity_id": entity_id,
        "description": literal(rule.description),
        "detected_at": literal(now, UTCDateTime()),
        "last_seen_at": literal(now, UTCDateTime()),
        "fingerprint": key,
        "occurrences": literal(1),
        "created_at": literal(now, UTCDateTime()),
        "updated_at": literal(now, UTCDateTime()),
    }
    if corrects and rule.fix is not None:
        fixes = rule.fix()
        before = json_object({name: found.c[name] for name in fixes})
        after = json_object(
            {name: ClauseAdapter(found).traverse(value) for name, value in fixes.items()}
        )
        columns |= {
            "metadata": json_object({"before": before, "after": after}),
            "status": literal("resolved"),
            "auto_corrected": literal(True),
            "corrected_at": literal(now, UTCDateTime()),
            "resolved_at": literal(now, UTCDateTime()),
        }
    else:
        columns |= {
            "metadata": literal({}, JSONDocument),
            "status": literal("open"),
            "auto_corrected": literal(False),
        }
    inserted = session.execute(
        insert(alerts)
        .from_select(
            list(columns),
            select(*columns.values()).where(
                ~_open_alert_for(rule.name, rule.entity_type, entity_id)
            ),
        )
        .returning(alerts.c.entity_id)
    )
    # rowcount of INSERT … SELECT is not reported by every driver; RETURNING is.
    opened_ids = tuple(int(row[0]) for row in inserted.all())
    opened = len(opened_ids)
    corrected = 0
    if corrects and rule.fix is not None:
        if any_open:
            _close_corrected(session, rule, ids, now)
        result = session.execute(
            update(table).where(_among(session, table.c.id, ids)).values(**dict(rule.fix()))
        )
        corrected = _rowcount(result)
        opened = 0
    session.flush()
    return StoreOutcome(
        opened=opened,
        bumped=len(bumped),
        resolved=(),
        corrected=corrected,
        opened_ids=opened_ids,
    )


def _close_corrected(
    session: Session, rule: Rule, ids: Select[tuple[int]] | list[int], now: datetime
) -> None:
    """The open alerts of entities a fix corrects are resolved as auto-corrected."""
    session.execute(
        update(alerts)
        .where(
            alerts.c.entity_type == rule.entity_type,
            alerts.c.alert_type == rule.name,
            alerts.c.status.in_(OPEN),
            _among(session, alerts.c.entity_id, ids),
        )
        .values(
            status="resolved",
            auto_corrected=True,
            corrected_at=now,
            resolved_at=now,
            last_seen_at=now,
            updated_at=now,
        )
    )


def store_listed(
    session: Session,
    *,
    alert_type: str,
    severity: str,
    entity_type: str,
    description: str,
    findings: Sequence[tuple[int, dict[str, Any]]],
    scope: Sequence[int],
    now: datetime,
) -> StoreOutcome:
    """Findings computed outside SQL (reconciliation): one bump and one multi-row insert.

    Open alerts of ``alert_type`` for entities in ``scope`` (what was compared this
    time) that are not among the findings are resolved; others are left alone.
    """
    ids = [entity_id for entity_id, _ in findings]
    bumped = len(_bump(session, alert_type, entity_type, ids, now)) if ids else 0
    already = set(
        session.scalars(
            select(alerts.c.entity_id).where(
                alerts.c.entity_type == entity_type,
                alerts.c.alert_type == alert_type,
                alerts.c.status.in_(OPEN),
                alerts.c.entity_id.in_(ids),
            )
        )
    )
    rows = [
        {
            "alert_type": alert_type,
            "severity": severity,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "description": description,
            "metadata": metadata,
            "detected_at": now,
            "last_seen_at": now,
            "fingerprint": fingerprint(alert_type, entity_type, entity_id),
            "status": "open",
            "occurrences": 1,
            "auto_corrected": False,
            "created_at": now,
            "updated_at": now,
        }
        for entity_id, metadata in findings
        if entity_id not in already
    ]
    if rows:
        session.execute(insert(alerts), rows)
    found = set(ids)
    compared = [entity_id for entity_id in scope if entity_id not in found]
    still = ~alerts.c.entity_id.in_(compared) if compared else literal(True)
    resolved = resolve_gone(session, alert_type=alert_type, still_holds=still, now=now)
    session.flush()
    return StoreOutcome(opened=len(rows), bumped=bumped, resolved=resolved, corrected=0)
