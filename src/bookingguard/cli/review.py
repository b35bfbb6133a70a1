"""``bookingguard review``: list, show and resolve items of the manual review queue.

The CLI's actor in the audit log is ``--actor`` (default: ``cli:$USER``).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from bookingguard.cli.state import console, fail, print_json, state_of

if TYPE_CHECKING:
    from bookingguard.db.models import ManualReviewItem
    from bookingguard.review.queue import ReviewError

__all__ = ["app"]

app = typer.Typer(help="The manual review queue.", no_args_is_help=True, rich_markup_mode=None)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _as_dict(item: ManualReviewItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "call_id": item.call_id,
        "reason": item.reason,
        "priority": item.priority,
        "status": item.status,
        "context": item.context,
        "assigned_to": item.assigned_to,
        "resolved_by": item.resolved_by,
        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
        "resolution_note": item.resolution_note,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
    }


def _review_error(exc: ReviewError) -> NoReturn:
    from bookingguard.review import queue

    code = 2 if isinstance(exc, queue.ResolutionNoteRequiredError | queue.InvalidCursorError) else 1
    fail(exc.message, code)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="pending, in_progress, resolved, dismissed")
    ] = None,
    priority: Annotated[
        list[int] | None, typer.Option("--priority", help="1 (urgent) to 4")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    show_all: Annotated[bool, typer.Option("--all", help="Include closed items.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Review items by priority, then age (open ones unless --status or --all)."""
    from bookingguard.db.uow import UnitOfWork, session_factory
    from bookingguard.review import queue

    statuses = status or ([] if show_all else list(queue.OPEN_STATUSES))
    state = state_of(ctx)
    with UnitOfWork(session_factory(state.engine)) as uow:
        page = queue.list_items(
            uow.session, statuses=statuses, priorities=priority or (), limit=limit
        )
    if as_json:
        print_json({"items": [_as_dict(item) for item in page.items]})
        return
    from rich.table import Table

    table = Table("id", "priority", "status", "call", "reason", "assigned", "age")
    now = datetime.now(UTC)
    for item in page.items:
        age = now - item.created_at
        table.add_row(
            str(item.id),
            str(item.priority),
            item.status,
            str(item.call_id),
            item.reason,
            item.assigned_to or "",
            f"{age.days}d {age.seconds // 3600}h",
        )
    console().print(table)
    if page.next_cursor:
        console().print(f"(first {limit} shown; use --limit for more)")


@app.command()
def show(
    ctx: typer.Context,
    item_id: Annotated[int, typer.Argument(help="Review item id.")],
    as_json: JsonFlag = False,
) -> None:
    """One review item with its audit trail."""
    from bookingguard.db.uow import UnitOfWork, session_factory
    from bookingguard.review import queue

    state = state_of(ctx)
    try:
        with UnitOfWork(session_factory(state.engine)) as uow:
            item = queue.get_item(uow.session, item_id)
            trail = queue.audit_trail(uow.session, item_id)
    except queue.ReviewError as exc:
        _review_error(exc)
    audit = [
        {
            "actor": row.actor,
            "action": row.action,
            "ip": row.ip,
            "details": row.details,
            "at": row.at.isoformat(),
        }
        for row in trail
    ]
    if as_json:
        print_json({**_as_dict(item), "audit": audit})
        return
    for key, value in _as_dict(item).items():
        console().print(f"[bold]{key}[/]: {value}", highlight=False)
    for entry in audit:
        console().print(f"  {entry['at']}  {entry['actor']}  {entry['action']}", highlight=False)


@app.command()
def resolve(
    ctx: typer.Context,
    item_id: Annotated[int, typer.Argument(help="Review item id.")],
    note: Annotated[str, typer.Option("--note", help="Resolution note (required).")] = "",
    dismiss: Annotated[
        bool, typer.Option("--dismiss", help="Close as not a problem instead.")
    ] = False,
    actor: Annotated[str | None, typer.Option("--actor", help="Name in the audit log.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Resolve (or --dismiss) an open item; the note is required and the action audited."""
    from bookingguard.db.uow import UnitOfWork, session_factory
    from bookingguard.review import queue

    state = state_of(ctx)
    close = queue.dismiss if dismiss else queue.resolve
    try:
        with UnitOfWork(session_factory(state.engine)) as uow:
            item = close(
                uow.session,
                item_id,
                actor=actor or _default_actor(),
                note=note,
                now=datetime.now(UTC),
            )
            uow.commit()
    except queue.ReviewError as exc:
        _review_error(exc)
    if as_json:
        print_json(_as_dict(item))
        return
    console().print(f"review item {item.id} {item.status} by {item.resolved_by}", highlight=False)
