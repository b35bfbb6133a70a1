"""One node of a Redis Cluster killed mid-run: the service degrades as it does when Redis is
down, and nothing raises into a call or a request.

Two phases, each reached by a condition, not by waiting: right after the kill the
other nodes still serve their slots (the cluster judges a node failed only after
its node timeout); once the survivors say ``cluster_state:fail``, every node answers
CLUSTERDOWN.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from bookingguard.api.ratelimit import RateLimiter
from bookingguard.api.readiness import redis_check
from bookingguard.api.server import build_server_app
from bookingguard.bootstrap import (
    build_async_redis,
    build_circuit_breaker,
    build_job_lock,
    build_redis,
)
from bookingguard.cli.app import app
from bookingguard.monitoring.locks import FallbackJobLock
from bookingguard.resilience import CircuitBreaker, CircuitOpenError, RedisStore
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import running_server
from tests.support.redis_cluster import LocalRedisCluster

TOKEN = "ops:operate:cluster-node-down-token-0123"
#: The limit the limiter is set to: a third request in the minute is refused while counted.
LIMIT = 2


async def _ok() -> str:
    return "ok"


def pick(cluster: LocalRedisCluster, names: list[str], *, key: str, dead: int, lost: bool) -> str:
    """The first of ``names`` whose Redis key (``key`` with the name) is on ``dead`` (``lost``)
    or on another node (not ``lost``)."""
    for name in names:
        if (cluster.owner_of(key.format(name)) == dead) is lost:
            return name
    raise AssertionError(f"no name for {key!r}")


def limited(limiter: RateLimiter, identity: str) -> list[bool]:
    """Whether each of LIMIT + 1 requests from ``identity`` was let through."""
    return [limiter.hit(identity).allowed for _ in range(LIMIT + 1)]


@pytest.mark.redis
async def test_a_killed_node_degrades_breaker_limiter_and_readiness(
    doomed_cluster: LocalRedisCluster, redis_prefix: str, database: TestDatabase
) -> None:
    """Calls on the lost node's slots degrade (SQL store, uncounted requests); the rest go on."""
    settings = Settings(
        database_url=database.url,
        redis_url=doomed_cluster.url,
        api={"rate_limit": f"{LIMIT}/minute"},
        circuit_breaker={"redis_key_prefix": redis_prefix, "store_recheck_seconds": 0.001},
        monitoring={"lock_key_prefix": redis_prefix + "job:"},
    )
    # Not the node serving slot 0: redis-py's asyncio cluster client asks that one for the
    # command table whenever it re-learns the cluster, so while it is down no call reaches
    # any node (the next test loses it: every call degrades).
    dead = next(port for port in doomed_cluster.ports if port != doomed_cluster.owner_of_slot(0))
    circuits = [f"appointment_booking:event_type:{n}" for n in range(1, 200)]
    lost_circuit, kept_circuit = (
        pick(doomed_cluster, circuits, key="{{{}}}", dead=dead, lost=lost) for lost in (True, False)
    )
    namespace = redis_prefix + "rl"
    counter = f"LIMITS:LIMITER/{namespace}/{{}}/{LIMIT}/1/minute"
    identities = [f"ip:10.0.0.{n}" for n in range(1, 250)]
    lost_client, kept_client, other_client = (
        pick(doomed_cluster, identities[start:], key=counter, dead=dead, lost=lost)
        for start, lost in ((0, True), (0, False), (100, False))
    )
    jobs = [f"job-{n}" for n in range(200)]
    lost_job, kept_job = (
        pick(doomed_cluster, jobs, key=redis_prefix + "job:{}", dead=dead, lost=lost)
        for lost in (True, False)
    )

    clients = build_redis(settings)
    assert clients is not None
    breaker = build_circuit_breaker(settings, database.engine, redis_client=clients.asyncio)
    limiter = RateLimiter.from_settings(
        settings, redis_client=clients.blocking, namespace=namespace
    )
    lock = build_job_lock(settings, database.engine, redis_client=clients.blocking)
    assert isinstance(lock, FallbackJobLock)
    try:
        assert await breaker.call(lost_circuit, _ok) == "ok"
        before = (breaker.active_store, await redis_check(clients.asyncio))

        doomed_cluster.kill(dead)
        lost_call = await breaker.call(lost_circuit, _ok)
        store_for_lost = breaker.active_store
        kept_call = await breaker.call(kept_circuit, _ok)
        store_for_kept = breaker.active_store
        requests = (limited(limiter, lost_client), limited(limiter, kept_client))
        kept_lease = lock.acquire(kept_job, hold=timedelta(0))
        # The lost node's lease comes from the database (or this host), and holds there.
        lost_lease = lock.acquire(lost_job, hold=timedelta(0))
        lost_again = lock.acquire(lost_job, hold=timedelta(0))
        for lease in (kept_lease, lost_lease):
            if lease is not None:
                lock.release(lease)
        node_lost = await redis_check(clients.asyncio)

        doomed_cluster.judge_failed_soon(dead)
        down_calls = [await breaker.call(key, _ok) for key in (lost_circuit, kept_circuit)]
        store_when_down = breaker.active_store
        requests_when_down = limited(limiter, other_client)
        cluster_down = await redis_check(clients.asyncio)
    finally:
        await breaker.aclose()
        await clients.aclose()

    assert before == ("redis", "ok")
    assert (lost_call, store_for_lost) == ("ok", "sql")
    assert (kept_call, store_for_kept) == ("ok", "redis")
    assert requests == ([True] * (LIMIT + 1), [True] * LIMIT + [False])
    assert kept_lease is not None
    assert lost_lease is not None
    assert lost_again is None
    assert node_lost.startswith("unreachable")
    assert (down_calls, store_when_down) == (["ok", "ok"], "sql")
    assert requests_when_down == [True] * (LIMIT + 1)
    assert cluster_down != "ok"


@pytest.mark.redis
def test_a_served_replica_answers_degraded_when_a_node_is_lost(
    doomed_cluster: LocalRedisCluster, database: TestDatabase
) -> None:
    """The node serving slot 0 lost: /readyz is 200 degraded naming redis, and the API (rate
    limited, breakers) still answers."""
    settings = Settings(
        database_url=database.url, redis_url=doomed_cluster.url, api={"tokens": [TOKEN]}
    )
    app = build_server_app(settings, engine=database.engine)
    headers = {"Authorization": f"Bearer {TOKEN.rsplit(':', 1)[1]}"}
    answers: dict[str, list[httpx.Response]] = {}
    with (
        running_server(app) as base_url,
        httpx.Client(base_url=base_url, headers=headers, timeout=20) as client,
    ):

        def ask(phase: str) -> None:
            answers[phase] = [
                client.get("/readyz"),
                client.get("/api/v1/alerts"),
                client.get("/api/v1/circuit-breakers"),
            ]

        ask("whole")
        first = doomed_cluster.owner_of_slot(0)
        doomed_cluster.kill(first)
        ask("node lost")
        doomed_cluster.judge_failed_soon(first)
        ask("cluster down")
    whole = answers.pop("whole")
    assert [response.status_code for response in whole] == [200, 200, 200]
    assert whole[0].json()["status"] == "ok"
    for phase, (ready, *api) in answers.items():
        assert ready.status_code == 200, phase
        assert ready.json()["status"] == "degraded", phase
        assert ready.json()["checks"]["database"] == "ok", phase
        assert ready.json()["checks"]["redis"] != "ok", phase
        assert [response.status_code for response in api] == [200, 200], (phase, api)


@pytest.mark.redis
async def test_a_slot_no_node_serves_degrades_running_and_new_processes(
    doomed_cluster: LocalRedisCluster, redis_prefix: str, database: TestDatabase
) -> None:
    """Every node up but a slot unassigned (CLUSTERDOWN): the breaker and the limiter degrade."""
    key = "appointment_booking:event_type:8"
    settings = Settings(
        database_url=database.url,
        redis_url=doomed_cluster.url,
        api={"rate_limit": f"{LIMIT}/minute"},
        circuit_breaker={"redis_key_prefix": redis_prefix},
    )
    owner = doomed_cluster.owner_of("{" + key + "}")
    counter = f"LIMITS:LIMITER/bookingguard:ratelimit/{{}}/{LIMIT}/1/minute"
    identities = [f"ip:10.0.1.{n}" for n in range(1, 250)]
    identity = pick(doomed_cluster, identities, key=counter, dead=owner, lost=True)
    running = build_redis(settings)
    assert running is not None
    breaker = build_circuit_breaker(settings, database.engine, redis_client=running.asyncio)
    limiter = RateLimiter.from_settings(settings, redis_client=running.blocking)
    try:
        assert await breaker.call(key, _ok) == "ok"
        assert breaker.active_store == "redis"
        doomed_cluster.unassign("{" + key + "}")
        answers = [await breaker.call(key, _ok), breaker.active_store, limited(limiter, identity)]
        # Waiting out redis-py's own pause after CLUSTERDOWN, the store sees the error itself.
        patient = CircuitBreaker(
            RedisStore(running.asyncio, key_prefix=redis_prefix, timeout_seconds=2.0),
            registry=CollectorRegistry(),
        )
        patient_answers = [await patient.call(key, _ok), patient.active_store]
        ready = await redis_check(running.asyncio)
        started = build_redis(settings)
        assert started is not None
        fresh = build_circuit_breaker(settings, database.engine, redis_client=started.asyncio)
        fresh_answers = [await fresh.call(key, _ok), fresh.active_store]
        await fresh.aclose()
        await started.aclose()
    finally:
        await breaker.aclose()
        await running.aclose()
    assert answers == ["ok", "sql", [True] * (LIMIT + 1)]
    assert patient_answers == ["ok", "memory"]
    assert ready == "cluster state fail"
    assert fresh_answers == ["ok", "sql"]


@pytest.mark.redis
async def test_a_process_starting_while_no_node_answers_degrades(
    doomed_cluster: LocalRedisCluster, database: TestDatabase
) -> None:
    """Every node gone: a new process's breaker runs on SQL and readiness says why."""
    settings = Settings(database_url=database.url, redis_url=doomed_cluster.url)
    doomed_cluster.stop()
    client = build_async_redis(doomed_cluster.url, timeout_seconds=0.1)
    breaker = build_circuit_breaker(settings, database.engine, redis_client=client)
    try:
        answer = [await breaker.call("appointment_booking:event_type:9", _ok), breaker.active_store]
        ready = await redis_check(client)
    finally:
        await breaker.aclose()
        await client.aclose()
    assert answer == ["ok", "sql"]
    assert ready == "unreachable: RedisClusterException"


@pytest.mark.redis
async def test_a_node_back_takes_over_the_circuits_opened_while_it_was_gone(
    doomed_cluster: LocalRedisCluster, redis_prefix: str, database: TestDatabase
) -> None:
    """As when one Redis returns: the breaker goes back to the cluster, keeping what SQL opened."""
    settings = Settings(
        database_url=database.url,
        redis_url=doomed_cluster.url,
        circuit_breaker={"redis_key_prefix": redis_prefix, "store_recheck_seconds": 0.001},
    )
    dead = next(port for port in doomed_cluster.ports if port != doomed_cluster.owner_of_slot(0))
    circuits = [f"appointment_booking:event_type:{n}" for n in range(1, 200)]
    key = pick(doomed_cluster, circuits, key="{{{}}}", dead=dead, lost=True)
    clients = build_redis(settings)
    assert clients is not None
    breaker = build_circuit_breaker(settings, database.engine, redis_client=clients.asyncio)
    try:
        assert await breaker.call(key, _ok) == "ok"
        doomed_cluster.kill(dead)
        await breaker.force_open(key)
        while_gone = breaker.active_store
        doomed_cluster.restart(dead)
        with pytest.raises(CircuitOpenError):
            await breaker.call(key, _ok)
        back = breaker.active_store
        node = doomed_cluster.node(dead)
        stored = node.hget(f"{redis_prefix}{{{key}}}:state", "state")
        node.close()
    finally:
        await breaker.aclose()
        await clients.aclose()
    assert (while_gone, back, stored) == ("sql", "redis", "open")


@pytest.mark.redis
def test_breaker_commands_run_on_sql_while_no_node_answers(
    doomed_cluster: LocalRedisCluster, database: TestDatabase
) -> None:
    """``bookingguard breaker open``/``list`` with every node gone: answered from the SQL store."""
    env = {"BOOKINGGUARD_DATABASE_URL": database.url, "BOOKINGGUARD_REDIS_URL": doomed_cluster.url}
    doomed_cluster.stop()
    runner = CliRunner()
    opened = runner.invoke(
        app, ["breaker", "open", "appointment_booking:event_type:6", "--json"], env=env
    )
    listed = runner.invoke(app, ["breaker", "list", "--json"], env=env)
    assert opened.exit_code == 0, opened.output
    assert json.loads(opened.stdout)["store"] == "sql"
    assert listed.exit_code == 0, listed.output
    assert [(c["circuit_key"], c["state"]) for c in json.loads(listed.stdout)] == [
        ("appointment_booking:event_type:6", "open")
    ]
