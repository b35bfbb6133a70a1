"""``RedisStore``: circuits shared by every process, one Lua script per step."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ClusterError, NoScriptError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bookingguard.resilience import machine
from bookingguard.resilience.errors import StoreUnavailableError
from bookingguard.resilience.machine import (
    Admission,
    CircuitRecord,
    CircuitStatistics,
    Transition,
)
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy
from bookingguard.resilience.stores.resp import RespConnection, pack_parts
from bookingguard.settings import CircuitBreakerSettings

__all__ = ["DEFAULT_KEY_PREFIX", "OUTBOX_SCAN_SECONDS", "RedisStore"]

_DEFAULTS = CircuitBreakerSettings()
DEFAULT_KEY_PREFIX = _DEFAULTS.redis_key_prefix
_SCRIPT = resources.files(__package__).joinpath("redis_breaker.lua").read_text("utf-8")
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode("utf-8"), usedforsecurity=False).hexdigest()
_EVALSHA_HEAD = pack_parts("EVALSHA", _SCRIPT_SHA, "3")
#: listing walks keys for an operator, off the hot path: it may take longer than one call
_LISTING_TIMEOUT = 5.0
#: How often a drain of the outboxes also walks the keyspace (SCAN) for those of circuits
#: this process never used, a dead replica's among them. SCAN visits every key of the
#: database, which a Redis shared with other applications may hold millions of; the
#: outboxes of the circuits used here are looked at on every drain.
OUTBOX_SCAN_SECONDS = 300.0
#: Circuits remembered for the drain (circuit keys are bounded by the event types allowed).
_USED_CIRCUITS_CAP = 10_000
#: a cluster client's first command learns the slots and parses the command table
#: (about 0.1 s of CPU), and so does the first after an outage: not held to one call's bound
_CLUSTER_START_TIMEOUT = 1.0
#: What an unreachable server or cluster node raises. A cluster adds its own: a node
#: that lost a slot's owner answers CLUSTERDOWN (``ClusterError``), one mid-migration
#: TRYAGAIN, and a client that cannot map a slot to a node ``RedisClusterException``.
_OUTAGES = (
    RedisConnectionError,
    RedisTimeoutError,
    TimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
)


class RedisStore:
    """Circuits in Redis: one hash per circuit, every acquire and record one EVALSHA.

    The script runs atomically, uses Redis ``TIME`` as the clock, carries a version
    that drops results of calls admitted before a transition, and holds the half-open
    probe as a ``SET NX PX`` lease. A success in closed state costs the admission
    round trip only. Each call is bounded by ``timeout_seconds``; an outage raises
    ``StoreUnavailableError`` for the fallback chain. The client is the process's
    asyncio client, built by ``bootstrap``; the store never closes it. EVALSHA goes
    over a ``RespConnection`` to the same server (see ``resp`` for why and the figures).
    A script that decides transitions also keeps them in the circuit's outbox, which
    the audit drains (``drain_outbox``): a reply that times out on the way back still
    reaches the history.

    On Redis Cluster pass a ``redis.asyncio.RedisCluster``: the keys of a circuit
    carry its key as a hash tag (``bookingguard:cb:{KEY}:state``, ``…:probe`` and
    ``…:outbox``), so each script runs on the one node that owns the circuit's slot,
    and circuits spread over the nodes. redis-py runs the script there (the fast
    connection is one server's); a node that is down or a cluster that is down is an
    outage like a lost server (``tests/integration/redis_cluster/``).
    """

    durable = False

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_seconds: float = _DEFAULTS.redis_timeout_seconds,
        name: str = "redis",
        outbox_scan_seconds: float = OUTBOX_SCAN_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._client = client
        self._prefix = key_prefix
        self._timeout = timeout_seconds
        self._policy_args: dict[BreakerPolicy, tuple[str, ...]] = {}
        self._packed_policies: dict[BreakerPolicy, bytes] = {}
        self._packed_keys: dict[str, bytes] = {}
        # A lease token must be unique across processes: a random prefix and a counter.
        self._token_prefix = uuid.uuid4().hex[:16] + ":"
        self._tokens = itertools.count()
        self._fast = _fast_connection_for(client, timeout_seconds)
        #: Run when Redis answers NOSCRIPT, before the script is loaded again: a Redis
        #: restarted empty lost the circuits too, and a process that made no call while
        #: it was down never left it for the next store (see ``FallbackStore``).
        self.on_scripts_lost: Callable[[], Awaitable[None]] | None = None
        self._refilling = False
        self._unstarted_cluster = client if isinstance(client, aioredis.RedisCluster) else None
        self._used: set[str] = set()
        self._outbox_scan_seconds = outbox_scan_seconds
        self._monotonic = monotonic
        self._scanned_at: float | None = None

    def _keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self._prefix}{{{key}}}"
        return f"{base}:state", f"{base}:probe", f"{base}:outbox"

    def _args(self, policy: BreakerPolicy | None) -> tuple[str, ...]:
        if policy is None:
            return ()
        args = self._policy_args.get(policy)
        if args is None:
            args = self._policy_args[policy] = (
                str(policy.failure_threshold),
                str(round(policy.cooldown_seconds * 1000)),
                str(policy.success_threshold),
                str(round(policy.lease_seconds * 1000)),
                "" if policy.failure_rate_threshold is None else str(policy.failure_rate_threshold),
                str(policy.window_seconds * 1000),
                str(policy.minimum_calls),
                "1" if policy.slow_call_seconds is not None else "0",
                str(policy.slow_call_rate_threshold),
                str(round(policy.bucket_seconds * 1000)),
            )
            self._packed_policies[policy] = pack_parts(*args)
        return args

    def _packed(self, key: str, policy: BreakerPolicy | None, head: tuple[str, ...]) -> bytes:
        """The EVALSHA command in wire form; the key and policy parts are packed once."""
        keys = self._packed_keys.get(key)
        if keys is None:
            keys = pack_parts(*self._keys(key))
            if len(self._packed_keys) < 10_000:
                self._packed_keys[key] = keys
        policy_args = self._args(policy)
        tail = self._packed_policies[policy] if policy is not None else b""
        count = 6 + len(head) + len(policy_args)
        return b"*%d\r\n%s%s%s%s" % (count, _EVALSHA_HEAD, keys, pack_parts(*head), tail)

    async def _guarded(self, awaitable: Any, *, limit_seconds: float | None = None) -> Any:
        try:
            async with asyncio.timeout(limit_seconds or self._timeout):
                return await awaitable
        except _OUTAGES as exc:
            raise self._outage(exc) from exc

    async def _start_cluster(self, cluster: aioredis.RedisCluster) -> None:
        """Let a cluster client learn the cluster before its first command is timed.

        Bounded by one call's timeout, a cluster client's start (the slots, then
        redis-py parsing the command table) would be cancelled every time and the
        breaker would never leave its fallback; it runs under a longer bound, at the
        first command and after each outage (redis-py learns the cluster again then).
        """
        await self._guarded(cluster.initialize(), limit_seconds=_CLUSTER_START_TIMEOUT)
        self._unstarted_cluster = None

    def _outage(self, exc: BaseException) -> StoreUnavailableError:
        """The error for the fallback chain; a cluster client starts again before its next use."""
        if isinstance(self._client, aioredis.RedisCluster):
            self._unstarted_cluster = self._client
        return StoreUnavailableError(self.name, type(exc).__name__)

    async def _run(self, key: str, policy: BreakerPolicy | None, *head: str) -> list[Any]:
        """Run the script once (loading it on NOSCRIPT); an outage is ``StoreUnavailableError``."""
        if key not in self._used and len(self._used) < _USED_CIRCUITS_CAP:
            self._used.add(key)
        if self._unstarted_cluster is not None:
            await self._start_cluster(self._unstarted_cluster)
        try:
            try:
                return await self._evalsha(key, policy, head)
            except NoScriptError:
                await self._scripts_lost()
                # EVAL runs and keeps the script on the key's node; SCRIPT LOAD goes to
                # every node of a cluster, and fails while any of them is down.
                async with asyncio.timeout(self._timeout):
                    reply: list[Any] = await self._client.eval(
                        _SCRIPT, 3, *self._keys(key), *head, *self._args(policy)
                    )
                return reply
        except _OUTAGES as exc:
            raise self._outage(exc) from exc

    async def _scripts_lost(self) -> None:
        """Redis has lost the script: it restarted, most likely empty. ``on_scripts_lost``
        (the fallback chain's refill) runs first, once at a time; the refill's own calls
        here do not start another."""
        if self.on_scripts_lost is None or self._refilling:
            return
        self._refilling = True
        try:
            await self.on_scripts_lost()
        finally:
            self._refilling = False

    async def _evalsha(
        self, key: str, policy: BreakerPolicy | None, head: tuple[str, ...]
    ) -> list[Any]:
        reply: list[Any]
        if self._fast is not None:
            reply = await self._fast.execute_packed(self._packed(key, policy, head))
        else:
            async with asyncio.timeout(self._timeout):
                reply = await self._client.evalsha(
                    _SCRIPT_SHA, 3, *self._keys(key), *head, *self._args(policy)
                )
        return reply

    async def acquire(self, key: str, policy: BreakerPolicy) -> Admission:
        token = f"{self._token_prefix}{next(self._tokens)}"
        reply = await self._run(key, policy, "acquire", token, "", "", "")
        permitted, state = bool(reply[0]), _text(reply[1])
        return Admission(
            permitted,
            state,
            int(reply[2]),
            int(reply[3]),
            retry_after=int(reply[4]) / 1000,
            probe_token=token if permitted and state == machine.HALF_OPEN else None,
            transitions=tuple(_transitions(key, reply[5], self.name)),
            store=self.name,
        )

    async def record(
        self, key: str, policy: BreakerPolicy, admission: Admission, outcome: Outcome, *, slow: bool
    ) -> list[Transition]:
        reply = await self._run(
            key,
            policy,
            "record",
            admission.probe_token or "",
            str(admission.version),
            outcome.value,
            "1" if slow else "0",
        )
        return _transitions(key, reply[5], self.name)

    async def force_open(self, key: str) -> list[Transition]:
        reply = await self._run(key, None, "force_open")
        return _transitions(key, reply[5], self.name)

    async def reset(self, key: str) -> list[Transition]:
        reply = await self._run(key, None, "reset")
        return _transitions(key, reply[5], self.name)

    async def statistics(self, key: str) -> CircuitStatistics:
        if self._unstarted_cluster is not None:
            await self._start_cluster(self._unstarted_cluster)
        fields = await self._guarded(self._client.hgetall(self._keys(key)[0]))
        return _statistics(key, {_text(k): _text(v) for k, v in fields.items()}, self.name)

    async def _circuits_with(self, suffix: str) -> list[tuple[str, str]]:
        """(Redis key, circuit key) of every circuit that has its ``suffix`` key, sorted."""
        if self._unstarted_cluster is not None:
            await self._start_cluster(self._unstarted_cluster)
        pattern = f"{self._prefix}{{*}}:{suffix}"

        async def scan() -> list[str]:
            # scan_iter walks every node of a cluster client too
            return [_text(name) async for name in self._client.scan_iter(match=pattern, count=500)]

        names = await self._guarded(scan(), limit_seconds=_LISTING_TIMEOUT)
        tail = len("}:") + len(suffix)
        return sorted((name, name[len(self._prefix) + 1 : -tail]) for name in set(names))

    async def list_circuits(self) -> list[CircuitStatistics]:
        return [await self.statistics(key) for _, key in await self._circuits_with("state")]

    async def drain_outbox(self, write: Callable[[list[Transition]], Awaitable[None]]) -> int:
        """Hand every transition waiting in the circuits' outboxes to ``write``, then take it
        out; how many entries were written. ``write`` must be idempotent: the process
        that got the script's reply audits the same transitions itself.

        The outbox holds each answer that carried transitions, written by the script that
        decided them, so a reply lost on the way back (a timeout, a killed process) leaves
        them here. An entry ``write`` raised on stays for the next drain. Each drain looks
        at the outboxes of the circuits this store used; the first, and one every
        ``outbox_scan_seconds`` after, finds every outbox (SCAN), those of circuits only
        other processes used too.
        """
        drained = 0
        for name, key in await self._outboxes():
            for entry in await self._guarded(self._client.lrange(name, 0, -1)):
                await write(_transitions(key, entry, self.name))
                await self._guarded(self._client.lrem(name, 1, entry))
                drained += 1
        return drained

    async def _outboxes(self) -> list[tuple[str, str]]:
        """(Redis key, circuit key) of the outboxes a drain looks at now."""
        now = self._monotonic()
        if self._scanned_at is not None and now - self._scanned_at < self._outbox_scan_seconds:
            return [(self._keys(key)[2], key) for key in sorted(self._used)]
        found = await self._circuits_with("outbox")
        self._scanned_at = now
        return found

    async def adopt(self, circuits: list[CircuitStatistics]) -> int:
        taken = 0
        now = time.time()
        for stats in circuits:
            record = machine.adopted(stats, now)
            reply = await self._run(
                stats.circuit_key,
                None,
                "adopt",
                str(record.failure_count),
                _ms(record.last_failure_at),
                _ms(record.opened_at),
                _ms(record.closed_at),
                _ms(record.open_until),
                "1" if record.forced_open else "0",
                str(record.version),
                str(record.not_permitted_count),
                record.state,
            )
            taken += int(reply[0])
        return taken

    @property
    def round_trips(self) -> int | None:
        """Scripts sent over the fast connection so far (None when redis-py runs them)."""
        return self._fast.commands_sent if self._fast is not None else None

    async def aclose(self) -> None:
        """Close the hot-path connection; the client stays open for its owner (``bootstrap``)."""
        if self._fast is not None:
            self._fast.close()


def _fast_connection_for(
    client: aioredis.Redis | aioredis.RedisCluster, timeout: float
) -> RespConnection | None:
    """A ``RespConnection`` to the client's server if it is plain TCP, else None (use redis-py)."""
    if not isinstance(client, aioredis.Redis):
        return None  # a cluster client routes each script to its key's node itself
    pool = client.connection_pool
    if pool.connection_class is not aioredis.Connection:
        return None
    kwargs = pool.connection_kwargs
    return RespConnection(
        str(kwargs.get("host", "localhost")),
        int(kwargs.get("port", 6379)),
        db=int(kwargs.get("db", 0)),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        timeout=timeout,
    )


def _ms(epoch: float | None) -> str:
    return "" if epoch is None else str(round(epoch * 1000))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _seconds(value: str | None) -> float | None:
    return None if value in (None, "") else int(float(value)) / 1000


def _record(fields: dict[str, str]) -> CircuitRecord:
    window = fields.get("window")
    return CircuitRecord(
        state=fields.get("state", machine.CLOSED),
        failure_count=int(fields.get("failures", 0)),
        success_count=int(fields.get("successes", 0)),
        last_failure_at=_seconds(fields.get("last_failure")),
        opened_at=_seconds(fields.get("opened")),
        closed_at=_seconds(fields.get("closed")),
        open_until=_seconds(fields.get("open_until")),
        forced_open=fields.get("forced") == "1",
        version=int(fields.get("version", 0)),
        not_permitted_count=int(fields.get("not_permitted", 0)),
        buckets=json.loads(window) if window else {},
    )


def _statistics(key: str, fields: dict[str, str], store: str) -> CircuitStatistics:
    return machine.statistics_of(key, _record(fields), store=store)


def _transitions(key: str, encoded: bytes | str, store: str) -> list[Transition]:
    text = _text(encoded)
    if not text:
        return []
    document = json.loads(text)
    after = _statistics(key, {k: str(v) for k, v in document["after"].items()}, store)
    result = []
    for from_state, to_state, reason, at_ms, version in document["transitions"]:
        result.append(
            Transition(
                circuit_key=key,
                from_state=from_state,
                to_state=to_state,
                reason=reason,
                at=datetime.fromtimestamp(at_ms / 1000, UTC),
                version=int(version),
                after=after,
                decided_by=store,
            )
        )
    return result
