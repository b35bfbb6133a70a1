"""``CircuitBreaker``: guards calls to a dependency, per circuit key, over a store chain."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis, RedisCluster
from sqlalchemy import Engine

from bookingguard.clock import utc_now
from bookingguard.resilience.audit import TransitionAudit, TransitionSpool
from bookingguard.resilience.deadlines import Deadlines
from bookingguard.resilience.errors import CircuitOpenError, OperationTimeoutError
from bookingguard.resilience.events import BreakerEvent, EventKind, Listener
from bookingguard.resilience.machine import (
    CLOSED,
    Admission,
    CircuitStatistics,
    Transition,
    needs_recording,
)
from bookingguard.resilience.metrics import BreakerMetrics
from bookingguard.resilience.outcome import Classifier, Outcome, classify_exception
from bookingguard.resilience.policy import BreakerPolicy, PolicyResolver
from bookingguard.resilience.stores.base import BreakerStore
from bookingguard.resilience.stores.factory import store_from_settings
from bookingguard.resilience.stores.fallback import FallbackStore
from bookingguard.resilience.stores.memory import MemoryStore
from bookingguard.resilience.stores.redis import RedisStore
from bookingguard.resilience.stores.sql import SqlStore

if TYPE_CHECKING:
    from bookingguard.settings import Settings

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)

#: Circuits ``read`` remembers as seen closed; past it, a new circuit's reads wait.
_SEEN_CLOSED_CAP = 1024


class CircuitBreaker:
    """Closed → open → half_open → closed, per circuit key, shared through ``store``.

    ``call`` asks the store for admission (one atomic step), runs the operation
    under an enforced timeout, classifies the result as failure, success or
    ignored and records it (skipped for a success in closed state with nothing to
    reset); ``read``, for an operation without side effects, starts it beside its
    admission while the circuit was last seen closed. A store that is not already a
    ``FallbackStore`` is given a ``MemoryStore`` behind it, so the breaker never
    raises because its store is down. Transitions go to listeners, Prometheus and,
    unless the store already wrote them, the audit tables.
    """

    def __init__(
        self,
        store: BreakerStore,
        *,
        policy: BreakerPolicy | PolicyResolver | None = None,
        classifier: Classifier = classify_exception,
        listeners: Iterable[Listener] = (),
        registry: CollectorRegistry | None = None,
        audit: TransitionAudit | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not isinstance(store, FallbackStore):
            store = (
                store if isinstance(store, MemoryStore) else FallbackStore([store, MemoryStore()])
            )
        if isinstance(store, FallbackStore):
            store.on_switch = self._store_switched
        self.store: BreakerStore = store
        if isinstance(policy, PolicyResolver):
            self._policies = policy
        else:
            self._policies = PolicyResolver(policy or BreakerPolicy())
        self._classifier = classifier
        self._listeners = list(listeners)
        self._metrics = BreakerMetrics.for_registry(registry)
        self._audit = audit
        self._monotonic = monotonic
        self._background: set[asyncio.Task[None]] = set()
        self._deadlines: Deadlines | None = None
        #: Circuits whose last admission here found them closed (``read`` starts early).
        self._seen_closed: set[str] = set()
        chain = store.stores if isinstance(store, FallbackStore) else [store]
        self._durable = {s.name for s in chain if s.durable}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: Engine,
        redis_client: Redis | RedisCluster | None = None,
        clock: Callable[[], float] = time.time,
        classifier: Classifier = classify_exception,
        listeners: Iterable[Listener] = (),
        registry: CollectorRegistry | None = None,
        spool: TransitionSpool | None = None,
    ) -> CircuitBreaker:
        """A breaker over ``store_from_settings`` with the settings' policies, audited to SQL.

        ``engine`` and ``redis_client`` (the process's own, from ``bootstrap``) are
        shared, not built here: with no ``redis_client`` the SQL store leads.
        Transitions the database cannot take wait in ``spool``.
        """
        store = store_from_settings(settings, engine=engine, redis_client=redis_client, clock=clock)
        sql = next((s for s in store.stores if isinstance(s, SqlStore)), None)
        outboxes = [s for s in store.stores if isinstance(s, RedisStore)]
        return cls(
            store,
            policy=PolicyResolver.from_settings(settings.circuit_breaker),
            classifier=classifier,
            listeners=listeners,
            registry=registry,
            audit=(
                TransitionAudit(sql.engine, spool=spool, outboxes=outboxes)
                if sql is not None
                else None
            ),
        )

    @property
    def audit(self) -> TransitionAudit | None:
        """What writes the transitions Redis or memory decided into the history."""
        return self._audit

    @property
    def active_store(self) -> str:
        """Name of the store that answered last (``redis``, ``sql`` or ``memory``)."""
        return self.store.active.name if isinstance(self.store, FallbackStore) else self.store.name

    def policy_for(self, circuit_key: str) -> BreakerPolicy:
        """The thresholds that apply to ``circuit_key`` (defaults or a prefix override)."""
        return self._policies(circuit_key)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every ``BreakerEvent`` from now on."""
        self._listeners.append(listener)

    @overload
    async def call(
        self,
        circuit_key: str,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    @overload
    async def call(
        self, circuit_key: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    async def call(
        self, circuit_key: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` if the circuit admits it, within the circuit's timeout.

        An async ``fn`` still running at ``timeout_seconds`` is cancelled. A sync ``fn``
        runs in a worker thread and the caller stops waiting at the timeout, but the
        thread **cannot be killed**: it runs on until ``fn`` returns, so give blocking
        clients their own timeouts too. Either way the call counts as a failure and a
        slow call, and the caller gets ``OperationTimeoutError``. A sync ``fn`` that
        returns an awaitable (``lambda: client.get(url)``) has it awaited too; pass
        async functions themselves to skip the thread. A rejected call raises
        ``CircuitOpenError`` without calling ``fn``.
        """
        policy = self._policies.cached(circuit_key) or self._policies(circuit_key)
        admission = await self.store.acquire(circuit_key, policy)
        if admission.transitions:
            self._publish(admission.transitions, admission.store)
        if admission.permitted and admission.state == CLOSED:
            if len(self._seen_closed) < _SEEN_CLOSED_CAP:
                self._seen_closed.add(circuit_key)
        else:
            self._seen_closed.discard(circuit_key)
        if not admission.permitted:
            self._metrics.refused(circuit_key)
            self._emit(BreakerEvent(EventKind.NOT_PERMITTED, circuit_key, at=utc_now()))
            raise CircuitOpenError(
                circuit_key, state=admission.state, retry_after=admission.retry_after
            )
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(loop)
        # Durations matter only for the slow-call rate; skip the clock when it is off.
        started = self._monotonic() if policy.slow_call_seconds is not None else None
        deadline = deadlines.start(policy.timeout_seconds)
        try:
            if _is_async(fn):
                result = await fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(fn, *args, **kwargs)
                if inspect.isawaitable(result):  # e.g. ``lambda: client.get(url)``
                    result = await result
        except asyncio.CancelledError:
            if deadlines.finish(deadline):
                await self._settle(circuit_key, policy, admission, Outcome.FAILURE, slow=True)
                raise OperationTimeoutError(
                    circuit_key, timeout_seconds=policy.timeout_seconds
                ) from None
            # The caller gave up: say nothing about the dependency, but free a probe lease.
            task = loop.create_task(
                self._settle(circuit_key, policy, admission, Outcome.IGNORED, slow=False)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        except Exception as exc:
            deadlines.finish(deadline)
            slow = started is not None and policy.is_slow(self._monotonic() - started)
            await self._settle(circuit_key, policy, admission, self._classifier(exc), slow=slow)
            raise
        except BaseException:
            deadlines.finish(deadline)
            raise
        deadlines.finish(deadline)
        self._metrics.call(circuit_key, "success")
        # needs_recording(), inlined: this is the hot path.
        if admission.failure_count or admission.state != CLOSED or policy.windowed:
            slow = started is not None and policy.is_slow(self._monotonic() - started)
            await self._record(circuit_key, policy, admission, Outcome.SUCCESS, slow=slow)
        return result

    async def read(self, circuit_key: str, fn: Callable[[], Awaitable[T]], /) -> T:
        """``call`` for an operation without side effects (a GET), started beside its
        admission while this process last saw the circuit closed.

        The admission is a round trip to the store; a read need not wait for it, since
        a read the circuit turns out to refuse has changed nothing. So ``fn`` starts as
        a task at once and ``call`` asks for the admission meanwhile; a refusal cancels
        the task and raises ``CircuitOpenError`` as ``call`` does. A circuit seen
        refusing or not closed (here, or in a transition this process published) makes
        the next reads wait for their admission until one finds it closed again: at
        most one request reaches a dependency whose circuit another process opened. In
        ``bench/booking_path.py`` check_availability's admission took 0.31 ms at the
        median, where the goal (one durable commit, 0.27-0.38 ms there) is all the
        service may add to the request.
        """
        if circuit_key not in self._seen_closed:
            return await self.call(circuit_key, fn)
        started = asyncio.ensure_future(fn())

        async def admitted() -> T:
            return await started

        try:
            return await self.call(circuit_key, admitted)
        except BaseException:
            started.cancel()
            started.add_done_callback(_retrieve)
            raise

    async def _settle(
        self,
        circuit_key: str,
        policy: BreakerPolicy,
        admission: Admission,
        outcome: Outcome,
        *,
        slow: bool,
    ) -> None:
        self._metrics.call(circuit_key, outcome.value)
        if needs_recording(admission, policy, outcome):
            await self._record(circuit_key, policy, admission, outcome, slow=slow)

    async def _record(
        self,
        circuit_key: str,
        policy: BreakerPolicy,
        admission: Admission,
        outcome: Outcome,
        *,
        slow: bool,
    ) -> None:
        # Shielded: once sent, a result is recorded and its transitions published (and
        # audited) even if the caller is cancelled meanwhile, a client that hung up on a
        # slow probe say; else Redis would hold a transition the history never hears of.
        async def record() -> None:
            transitions = await self.store.record(
                circuit_key, policy, admission, outcome, slow=slow
            )
            if transitions:
                self._publish(tuple(transitions), admission.store)

        task = asyncio.get_running_loop().create_task(record())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def statistics(self, circuit_key: str) -> CircuitStatistics:
        """The circuit as the store sees it now."""
        return await self.store.statistics(circuit_key)

    async def list_circuits(self) -> list[CircuitStatistics]:
        """Every circuit the active store knows, sorted by key."""
        return await self.store.list_circuits()

    async def reset(self, circuit_key: str) -> CircuitStatistics:
        """Close the circuit and clear its counts; returns the circuit afterwards."""
        self._publish(tuple(await self.store.reset(circuit_key)), self.active_store)
        return await self.statistics(circuit_key)

    async def force_open(self, circuit_key: str) -> CircuitStatistics:
        """Open the circuit until ``reset`` (no cooldown ends it); returns it afterwards."""
        self._publish(tuple(await self.store.force_open(circuit_key)), self.active_store)
        return await self.statistics(circuit_key)

    async def drain(self) -> None:
        """Wait for background work: audit writes and lease releases of cancelled calls."""
        while self._background:
            await asyncio.gather(*list(self._background))
        if self._audit is not None:
            await self._audit.drain()

    async def aclose(self) -> None:
        """Finish background work and close the stores' connections."""
        await self.drain()
        await self.store.aclose()

    def _publish(self, transitions: tuple[Transition, ...], store: str) -> None:
        for transition in transitions:
            if transition.to_state != CLOSED:
                self._seen_closed.discard(transition.circuit_key)
            log.info(
                "circuit %s: %s -> %s (%s)",
                transition.circuit_key,
                transition.from_state,
                transition.to_state,
                transition.reason,
            )
            self._metrics.transition(
                transition.circuit_key, transition.from_state, transition.to_state
            )
            self._emit(
                BreakerEvent(
                    EventKind.TRANSITION,
                    transition.circuit_key,
                    transition=transition,
                    at=transition.at,
                )
            )
        if transitions and self._audit is not None and store not in self._durable:
            self._audit.submit(list(transitions))

    def _store_switched(self, from_store: str, to_store: str) -> None:
        chain = self.store.stores if isinstance(self.store, FallbackStore) else []
        names = [store.name for store in chain]
        degraded = names.index(to_store) > names.index(from_store)
        kind = EventKind.STORAGE_DEGRADED if degraded else EventKind.STORAGE_RECOVERED
        self._metrics.store_switches.labels(from_store=from_store, to_store=to_store).inc()
        self._emit(BreakerEvent(kind, from_store=from_store, to_store=to_store, at=utc_now()))

    def _emit(self, event: BreakerEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("circuit breaker listener %r failed", listener)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback of a read ``call`` did not finish: its error, if any, is nobody's."""
    if not task.cancelled():
        task.exception()


def _is_async(fn: Callable[..., Any]) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None:
        return bool(code.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
