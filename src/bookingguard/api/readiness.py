"""``/readyz``: which dependencies answer, and whether that makes the service unready.

The database is essential: unreachable, or behind the migration head, and the
replica is out of rotation (503). Redis and the notification channels are not:
the breaker, limiter and locks fall back without Redis, and the outbox keeps
undelivered notifications until their channel answers. Their failure makes the
answer ``degraded`` (still 200), so a load balancer does not pull every replica
during a Redis outage. So does a spool of failed-booking records (or breaker
transitions) not yet replayed into the database: something needs a look, but the
replica serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio
from redis.asyncio import Redis, RedisCluster
from sqlalchemy import Engine, func, select, text

from bookingguard.db import migrate
from bookingguard.db.models import NotificationOutbox
from bookingguard.db.spool import Spool

__all__ = [
    "ESSENTIAL_CHECKS",
    "Readiness",
    "database_check",
    "notifications_check",
    "readiness",
    "redis_check",
    "spool_check",
]

#: Checks whose failure makes the service unready; any other failing check only degrades it.
ESSENTIAL_CHECKS = frozenset({"database"})
OK = "ok"


@dataclass(frozen=True)
class Readiness:
    """The ``/readyz`` answer: ``status`` is ``ok``, ``degraded`` or ``unavailable``."""

    status: str
    checks: Mapping[str, str]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unavailable" else 200


def readiness(checks: Mapping[str, str]) -> Readiness:
    """Judge ``checks`` (name → ``"ok"`` or what is wrong)."""
    failing = {name for name, value in checks.items() if value != OK}
    if failing & ESSENTIAL_CHECKS:
        status = "unavailable"
    elif failing:
        status = "degraded"
    else:
        status = OK
    return Readiness(status, dict(checks))


def database_check(engine: Engine, head: str | None) -> str:
    """``ok`` when the database answers at the head revision, else why not. Blocking."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = migrate.current_revision(engine)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    if current != head:
        return f"migrations not at head (current {current}, head {head})"
    return OK


def notifications_check(engine: Engine) -> str:
    """``ok`` unless deliveries are being retried: then which channels are failing. Blocking.

    A pending message with attempts behind it is one whose channel refused it last time.
    """
    query = (
        select(NotificationOutbox.channel, func.count())
        .where(NotificationOutbox.status == "pending", NotificationOutbox.attempts > 0)
        .group_by(NotificationOutbox.channel)
        .order_by(NotificationOutbox.channel)
    )
    try:
        with engine.connect() as connection:
            failing = connection.execute(query).all()
    except Exception as exc:
        return f"unknown: {type(exc).__name__}"
    if not failing:
        return OK
    return "retrying " + ", ".join(f"{count} on {channel}" for channel, count in failing)


def spool_check(spool: Spool) -> str:
    """``ok`` when nothing waits in the spool for the database. Blocking."""
    try:
        backlog = spool.backlog()
    except Exception as exc:
        return f"unknown: {type(exc).__name__}"
    if backlog == 0:
        return OK
    return f"{backlog} record(s) waiting to be replayed into the database"


async def redis_check(client: Redis | RedisCluster, *, timeout_seconds: float = 2.0) -> str:
    """``ok`` when Redis answers a PING within ``timeout_seconds``.

    A cluster is ``ok`` when every node answers and the cluster says its state is ok
    (all slots served): one node lost degrades the service as a lost server does.
    """
    try:
        with anyio.fail_after(timeout_seconds):
            if isinstance(client, RedisCluster):
                await client.ping(target_nodes=RedisCluster.ALL_NODES)
                state = (await client.cluster_info()).get("cluster_state")
                if state != "ok":
                    return f"cluster state {state}"
            else:
                await client.ping()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return OK
