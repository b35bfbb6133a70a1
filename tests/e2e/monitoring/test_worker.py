"""``bookingguard worker`` as real processes: one replica per job and interval; safe delivery."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import text

from bookingguard.db.models import NotificationOutbox
from tests.conftest import TestDatabase
from tests.support.slack import SlackStandIn


def worker_env(database: TestDatabase, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
    environment.update({"BOOKINGGUARD_DATABASE_URL": database.url, **extra})
    return environment


@contextmanager
def workers(count: int, env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bookingguard", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(timeout=30)


def wait_for(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return False


def queued(slack: SlackStandIn) -> list[str]:
    """The test's own messages (the worker also posts its daily report)."""
    return [text for text in slack.texts() if text.startswith("message ")]


def check_runs(database: TestDatabase) -> list[tuple[datetime, datetime]]:
    with database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT started_at, finished_at FROM check_runs"
                " WHERE trigger = 'scheduled' ORDER BY started_at"
            )
        ).all()
    return [(row[0], row[1]) for row in rows]


def test_three_workers_run_one_check_per_interval(
    database: TestDatabase, redis_url: str, redis_prefix: str
) -> None:
    """Three replicas with a 2 s interval make about one run per 2 s, never overlapping."""
    env = worker_env(
        database,
        BOOKINGGUARD_REDIS_URL=redis_url,
        BOOKINGGUARD_MONITORING__LOCK_KEY_PREFIX=redis_prefix,
        BOOKINGGUARD_MONITORING__INTERVAL_SECONDS="2",
    )
    with workers(3, env):
        assert wait_for(lambda: len(check_runs(database)) >= 1, timeout=60)
        started = time.monotonic()
        time.sleep(6)
        elapsed = time.monotonic() - started
    runs = check_runs(database)
    assert len(runs) >= 3
    assert len(runs) <= elapsed / 2 + 3, runs
    for (_, finished), (next_start, _) in itertools.pairwise(runs):
        assert finished is not None
        assert finished <= next_start


def test_worker_killed_mid_delivery_delivers_each_message_once(
    database: TestDatabase, slack_standin: SlackStandIn, redis_url: str, redis_prefix: str
) -> None:
    """Killed while sending the third of six queued messages, a restarted worker sends 3-6 once."""
    now = datetime.now(UTC)
    with database.sessions.begin() as session:
        session.add_all(
            NotificationOutbox(
                channel="slack",
                kind="alert",
                subject=f"message {index}",
                payload={"severity": "warning"},
                fingerprints=[],
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            for index in range(1, 7)
        )
    env = worker_env(
        database,
        BOOKINGGUARD_REDIS_URL=redis_url,
        BOOKINGGUARD_MONITORING__LOCK_KEY_PREFIX=redis_prefix,
        BOOKINGGUARD_ALERTS__SLACK_WEBHOOK_URL=slack_standin.url,
        BOOKINGGUARD_MONITORING__DELIVERY_LEASE_SECONDS="3",
        BOOKINGGUARD_MONITORING__INTERVAL_SECONDS="3600",
    )
    with workers(1, env) as (first,):
        slack_standin.crash_on(3, pid=first.pid, sig=signal.SIGKILL)
        assert wait_for(lambda: first.poll() is not None, timeout=60)
    assert len(queued(slack_standin)) == 2
    with workers(1, env):
        assert wait_for(lambda: len(queued(slack_standin)) >= 6, timeout=60)
        time.sleep(3)
    assert sorted(queued(slack_standin)) == [f"message {index}" for index in range(1, 7)]
