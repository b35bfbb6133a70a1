"""``bookingguard check | report | alerts | worker``: the consistency monitor from the shell.

``check`` first replays this host's spool of failed-booking records into the
database (so the check sees them), then exits 0 clean, 1 only warnings, 2 anything
critical, 3 when the run itself failed (a rule errored), and delivers what it queued
before exiting.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from bookingguard.cli.state import (
    EXIT_COULD_NOT_RUN,
    cli_errors,
    console,
    err_console,
    fail,
    print_json,
    run_cli,
    state_of,
)
from bookingguard.errors import BookingGuardError

if TYPE_CHECKING:
    from bookingguard.monitoring.service import MonitoringService

__all__ = ["alerts_app", "check", "parse_duration", "reconcile", "report", "worker"]

alerts_app = typer.Typer(
    help="List, acknowledge, resolve, silence and prune alerts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str | timedelta) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``7d``, ``1w`` → a timedelta (BadParameter otherwise).

    A timedelta (an option's default, which click passes through the parser) is kept.
    """
    if isinstance(text, timedelta):
        return text
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(f"not a duration such as 30m, 2h or 7d: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _service(ctx: typer.Context) -> MonitoringService:
    from bookingguard.bootstrap import build_monitoring

    state = state_of(ctx)
    return build_monitoring(state.settings, state.engine)


def check(
    ctx: typer.Context,
    since: Annotated[
        timedelta | None,
        typer.Option(
            "--since",
            parser=parse_duration,
            metavar="DURATION",
            help="Window to scan, e.g. 2h (default monitoring.recent_hours).",
        ),
    ] = None,
    scan_all: Annotated[bool, typer.Option("--all", help="Scan everything, not a window.")] = False,
    as_json: JsonFlag = False,
    fix: Annotated[
        bool, typer.Option("--fix/--no-fix", help="Auto-correct direction and link status.")
    ] = True,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Queue and send nothing.")] = False,
) -> None:
    """Run every consistency rule once; exit 0 clean, 1 warnings, 2 critical, 3 could not run.

    Failed-booking records spooled while the database was down are replayed first.
    """
    from rich.progress import Progress
    from rich.table import Table

    from bookingguard.bootstrap import replay_spool

    if since is not None and scan_all:
        raise typer.BadParameter("--since and --all exclude each other", param_hint="'--all'")
    state = state_of(ctx)
    try:
        replayed = asyncio.run(replay_spool(state.settings, state.engine))
    except Exception as exc:
        fail(f"spool replay failed: {type(exc).__name__}: {exc}", EXIT_COULD_NOT_RUN)
    if replayed.replayed or replayed.remaining:
        err_console().print(
            f"spool: {replayed.replayed} record(s) replayed into the database, "
            f"{replayed.remaining} left",
            highlight=False,
        )
    service = _service(ctx)
    with Progress(console=err_console(), transient=True, disable=as_json) as progress:
        task = progress.add_task("checking", total=len(service.monitor.rules))
        try:
            result = service.check(
                since=since,
                scan_all=scan_all,
                fix=fix,
                notify=not no_notify,
                on_rule=lambda name: progress.update(task, advance=1, description=name),
            )
        except Exception as exc:
            fail(f"check failed: {type(exc).__name__}: {exc}", EXIT_COULD_NOT_RUN)
    if not no_notify:
        with cli_errors(EXIT_COULD_NOT_RUN):
            service.deliver()
    if as_json:
        print_json(result.to_dict())
    else:
        table = Table("rule", "severity", "count", "samples")
        for name, finding in result.to_dict()["findings"].items():
            ids = ", ".join(str(s["entity_id"]) for s in finding["samples"])
            table.add_row(name, finding["severity"], str(finding["count"]), ids)
        console().print(table)
        for error in result.errors:
            err_console().print(
                f"[red]errored:[/] {error['rule']}: {error['message']}", highlight=False
            )
        console().print(
            f"run {result.run_id}: totals {result.totals}, auto-corrected {result.auto_corrected}, "
            f"opened {result.alerts_opened}, resolved {result.alerts_resolved}",
            highlight=False,
        )
    raise typer.Exit(result.exit_code)


def report(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="Day (UTC); default yesterday."),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--format", metavar="FORMAT", help="text (default), json or html.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (same as --format json).")
    ] = False,
) -> None:
    """The daily consistency report."""
    from bookingguard.monitoring.report import render_html, render_text

    if output not in (None, "text", "json", "html"):
        raise typer.BadParameter("must be text, json or html", param_hint="'--format'")
    if as_json and output not in (None, "json"):
        raise typer.BadParameter(f"--json and --format {output} exclude each other")
    chosen_format = "json" if as_json else output or "text"
    try:
        chosen = date.fromisoformat(day) if day else None
    except ValueError:
        raise typer.BadParameter(f"not a YYYY-MM-DD date: {day!r}", param_hint="'--date'") from None
    document = _service(ctx).daily_report(day=chosen)
    if chosen_format == "json":
        print_json(document)
    elif chosen_format == "html":
        typer.echo(render_html(document))
    else:
        typer.echo(render_text(document))


@alerts_app.command("list")
def list_alerts(
    ctx: typer.Context,
    status: Annotated[
        str, typer.Option(help="Comma-separated statuses: open, acknowledged, resolved.")
    ] = "open,acknowledged",
    alert_type: Annotated[str | None, typer.Option("--type", help="Only this rule.")] = None,
    severity: Annotated[str | None, typer.Option(help="Only this severity.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List alerts, newest first."""
    rows = _service(ctx).list_alerts(
        status=tuple(s.strip() for s in status.split(",") if s.strip()),
        alert_type=alert_type,
        severity=severity,
        limit=limit,
    )
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("id", "type", "severity", "entity", "status", "seen", "last seen")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["alert_type"],
            row["severity"],
            f"{row['entity_type']} {row['entity_id']}",
            row["status"],
            str(row["occurrences"]),
            str(row["last_seen_at"]),
        )
    console().print(table)


ByOption = Annotated[str, typer.Option("--by", help="Who does it (kept on the alert).")]


@alerts_app.command("ack")
def ack(ctx: typer.Context, alert_id: int, by: ByOption = "cli", as_json: JsonFlag = False) -> None:
    """Acknowledge an alert: no more repeats, still deduplicated."""
    row = run_cli(_service(ctx).acknowledge, alert_id, by=by)
    print_json(row) if as_json else console().print(f"alert {alert_id} {row['status']}")


@alerts_app.command("resolve")
def resolve(
    ctx: typer.Context, alert_id: int, by: ByOption = "cli", as_json: JsonFlag = False
) -> None:
    """Resolve an alert by hand."""
    row = run_cli(_service(ctx).resolve, alert_id, by=by)
    print_json(row) if as_json else console().print(f"alert {alert_id} {row['status']}")


@alerts_app.command("silence")
def silence(
    ctx: typer.Context,
    author: Annotated[str, typer.Option("--author", help="Who silences.")],
    comment: Annotated[str, typer.Option("--comment", help="Why.")],
    duration: Annotated[
        timedelta,
        typer.Option(
            "--for",
            parser=parse_duration,
            metavar="DURATION",
            show_default=False,
            help="How long (default 2h).",
        ),
    ] = timedelta(hours=2),
    alert_type: Annotated[str | None, typer.Option("--type", help="Match this rule.")] = None,
    entity_type: Annotated[str | None, typer.Option(help="Match this entity type.")] = None,
    entity_id: Annotated[int | None, typer.Option(help="Match this entity id.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Mute notifications for matching alerts until the silence expires."""
    row = run_cli(
        _service(ctx).silence,
        author=author,
        comment=comment,
        duration=duration,
        alert_type=alert_type,
        entity_type=entity_type,
        entity_id=entity_id,
    )
    print_json(row) if as_json else console().print(
        f"silence {row['id']} until {row['expires_at']}"
    )


@alerts_app.command("silences")
def silences(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Active and future silences."""
    rows = _service(ctx).silences()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console().print(
            f"{row['id']}: {row['alert_type'] or '*'} {row['entity_type'] or '*'} "
            f"{row['entity_id'] or '*'} by {row['author']} until {row['expires_at']}: "
            f"{row['comment']}",
            highlight=False,
        )


@alerts_app.command("prune")
def prune(
    ctx: typer.Context,
    retention_days: Annotated[
        int | None, typer.Option(min=1, help="Override the retention.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete resolved or auto-corrected alerts older than the retention."""
    count = _service(ctx).prune(retention_days=retention_days)
    print_json({"pruned": count}) if as_json else console().print(f"pruned {count} alerts")


def reconcile(
    ctx: typer.Context,
    since: Annotated[
        timedelta,
        typer.Option(
            "--since",
            parser=parse_duration,
            metavar="DURATION",
            show_default=False,
            help="Bookings starting this far back (default 24h).",
        ),
    ] = timedelta(hours=24),
    ahead: Annotated[
        timedelta,
        typer.Option(
            "--ahead",
            parser=parse_duration,
            metavar="DURATION",
            show_default=False,
            help="…and this far ahead (default 30d).",
        ),
    ] = timedelta(days=30),
    as_json: JsonFlag = False,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Queue and send nothing.")] = False,
) -> None:
    """Compare local appointments with Cal.com bookings; exit as check does (3: could not run)."""
    import asyncio

    service = _service(ctx)
    try:
        result = asyncio.run(
            service.reconcile_calcom(since=since, ahead=ahead, notify=not no_notify)
        )
    except BookingGuardError as exc:
        fail(exc.message, EXIT_COULD_NOT_RUN)
    except Exception as exc:
        fail(f"reconcile failed: {type(exc).__name__}: {exc}", EXIT_COULD_NOT_RUN)
    if not no_notify:
        with cli_errors(EXIT_COULD_NOT_RUN):
            service.deliver()
    document = result.to_dict()
    if as_json:
        print_json(document)
    else:
        for name, finding in document["findings"].items():
            console().print(f"{name} ({finding['severity']}): {finding['count']}", highlight=False)
        console().print(
            f"{document['local_count']} local, {document['remote_count']} at Cal.com, "
            f"{document['buckets_differing']}/{document['buckets']} buckets differ, "
            f"{document['remote_requests']} requests",
            highlight=False,
        )
    severities = {f["severity"] for f in document["findings"].values() if f["count"]}
    raise typer.Exit(2 if "critical" in severities else 1 if "warning" in severities else 0)


def worker(ctx: typer.Context) -> None:
    """Run the scheduled check, delivery, daily report, retention and partition upkeep."""
    import signal
    import threading
    from types import FrameType

    from bookingguard.api.observability import configure_logging
    from bookingguard.monitoring.scheduler import run_worker

    service = _service(ctx)
    configure_logging(service.settings.logging)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_worker(service, stop=stop)
