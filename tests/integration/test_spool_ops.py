"""The spool in operation: shared by processes, shown by /readyz and /metrics, replayed by
``serve``'s background work and by ``bookingguard check``."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import select

from bookingguard.api.server import build_server_app
from bookingguard.booking.spool_replay import ReplayResult, SpoolReplayer
from bookingguard.bootstrap import build_engine
from bookingguard.db.models import Call
from bookingguard.db.spool import BOOKING_FAILED, FailureRecord, Spool
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import running_server
from tests.support.cli import run_cli

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
RECORDS_PER_PROCESS = 40


def _record(retell_call_id: str) -> FailureRecord:
    return FailureRecord(
        kind=BOOKING_FAILED,
        retell_call_id=retell_call_id,
        call_id=None,
        reason="calcom_unavailable",
        details={"attempts": 3},
        at=NOW,
    )


def _spooled(path: Path, *retell_call_ids: str) -> Spool:
    spool = Spool(path)
    for retell_call_id in retell_call_ids:
        spool.append(_record(retell_call_id))
    return spool


def _flagged(database: TestDatabase) -> dict[str, str | None]:
    with UnitOfWork(database.sessions) as uow:
        rows = uow.session.execute(
            select(Call.retell_call_id, Call.booking_failure_reason).where(
                Call.booking_failed.is_(True)
            )
        )
        return {str(row[0]): row[1] for row in rows}


def _append_many(path: Path, name: str, start: Barrier) -> None:
    spool = Spool(path)
    start.wait()
    for number in range(RECORDS_PER_PROCESS):
        spool.append(_record(f"{name}-{number}"))


def test_processes_appending_at_once_lose_no_record(tmp_path: Path) -> None:
    """Two processes append to one spool file at the same moment: every record is kept."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    path = tmp_path / "spool.db"
    workers = [
        context.Process(target=_append_many, args=(path, name, start)) for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    spool = Spool(path)
    assert spool.backlog() == 2 * RECORDS_PER_PROCESS
    pending = spool.pending(limit=1000)
    assert {record.retell_call_id for record in pending} == {
        f"{name}-{number}" for name in ("a", "b") for number in range(RECORDS_PER_PROCESS)
    }
    assert len({record.record_id for record in pending}) == 2 * RECORDS_PER_PROCESS


def test_a_spool_nobody_wrote_is_no_file(tmp_path: Path) -> None:
    """Reading a spool that was never written finds nothing and leaves no file behind."""
    spool = Spool(tmp_path / "spool.db")
    assert (spool.backlog(), spool.pending()) == (0, [])
    spool.remove("nothing")
    assert not spool.path.exists()


def test_readyz_is_degraded_and_metrics_count_a_spool_backlog(
    database: TestDatabase, tmp_path: Path
) -> None:
    """Records in the spool with the database up: /readyz 200 degraded naming the spool,
    and the backlog gauge counts them."""
    _spooled(tmp_path / "spool.db", "call_1", "call_2")
    settings = Settings(database_url=database.url, spool={"path": str(tmp_path / "spool.db")})
    engine = build_engine(settings)
    try:
        with running_server(build_server_app(settings, engine=engine)) as base_url:
            ready = httpx.get(f"{base_url}/readyz", timeout=20)
            metrics = httpx.get(f"{base_url}/metrics", timeout=20).text
    finally:
        engine.dispose()
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["spool"] == (
        "2 record(s) waiting to be replayed into the database"
    )
    assert "\nbookingguard_spool_backlog 2.0\n" in metrics


async def test_serve_replays_the_spool_in_the_background(
    database: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its background work on, the served app replays the spool into the database."""
    spool = _spooled(tmp_path / "spool.db", "call_spooled")
    passes: list[ReplayResult] = []
    replayed = asyncio.Event()
    replay = SpoolReplayer.replay

    async def observed(self: SpoolReplayer) -> ReplayResult:
        result = await replay(self)
        passes.append(result)
        replayed.set()
        return result

    monkeypatch.setattr(SpoolReplayer, "replay", observed)
    settings = Settings(
        database_url=database.url,
        spool={"path": str(spool.path)},
        monitoring={"lock_dir": str(tmp_path / "locks")},
    )
    app = build_server_app(settings, background=True, engine=build_engine(settings))
    async with app.router.lifespan_context(app):
        with anyio.fail_after(30):
            await replayed.wait()
    assert passes[0] == ReplayResult(1, 0)
    assert spool.backlog() == 0
    assert _flagged(database) == {"call_spooled": "calcom_unavailable"}


def test_check_replays_the_spool_before_it_checks(database: TestDatabase, tmp_path: Path) -> None:
    """``bookingguard check`` writes the spooled records first, so its run counts them."""
    spool = _spooled(tmp_path / "spool.db", "call_spooled")
    result = run_cli(
        "check",
        "--json",
        "--no-notify",
        env={
            "BOOKINGGUARD_DATABASE_URL": database.url,
            "BOOKINGGUARD_SPOOL__PATH": str(spool.path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spool: 1 record(s) replayed into the database, 0 left" in result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert findings["recent_failures"]["count"] == 1
    assert spool.backlog() == 0
    assert _flagged(database) == {"call_spooled": "calcom_unavailable"}
