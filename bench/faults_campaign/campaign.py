"""One fault campaign, start to finish.

Starts everything in a temporary directory (the Cal.com stand-in, PostgreSQL, Redis,
``bookingguard db upgrade``, two replicas of ``serve --workers 2``), drives traffic
while the schedule's faults fire, stops the faults, lets the system settle (every
replica's ``/readyz`` answers ``ok``, Cal.com's webhooks are all delivered), runs
``bookingguard reconcile`` and ``bookingguard check --all`` once, gathers the
evidence and hands it to the checker. Everything started is stopped at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench.faults_campaign.checker import Verdict, check
from bench.faults_campaign.driver import AGENT_ID, Answer, BreakerObservation, Driver
from bench.faults_campaign.evidence import Evidence, read_database, scrape_transitions
from bench.faults_campaign.processes import Postgres, RedisServer, Replica, wait_until
from bench.faults_campaign.schedule import CALCOM_FAULT_KINDS, FaultSchedule, InfraFault
from tests.support.calcom_standin import CalcomStandin

__all__ = ["CampaignConfig", "CampaignResult", "run_campaign"]

#: The campaign's own secrets, for its own replicas only.
RETELL_KEY = "retell-faults-key-5e1d"
CALCOM_SECRET = "whsec-faults-9b72"  # noqa: S105
API_TOKEN = "faults-operate-token-3c8a"  # noqa: S105
EVENT_TYPES = (4101, 4102, 4103)
_AHEAD = 30
#: ``check`` finding a replica's own monitor run holding the writer lock is asked again,
#: once a second, this often at most.
_CHECK_TRIES = 30


@dataclass(frozen=True)
class CampaignConfig:
    """What to run: ``operations`` requests, ``infra_per_kind`` of each infrastructure fault."""

    seed: int
    operations: int
    infra_per_kind: int
    #: The share of Cal.com requests that meet a fault.
    calcom_rate: float = 0.25
    concurrency: int = 6
    #: The fewest faults of each kind the run must inject to count.
    min_faults: int = 0
    #: Cal.com's read timeout in the replicas: a hang lasts past it.
    read_timeout: float = 1.0
    keep_directory: bool = False

    @staticmethod
    def infra_for(operations: int) -> int:
        """55 of each infrastructure fault per 5 000 operations, at least 3."""
        return max(3, math.ceil(operations * 55 / 5000))


@dataclass
class CampaignResult:
    """What a campaign did and found."""

    config: CampaignConfig
    operations: int = 0
    answered: int = 0
    conversations: int = 0
    elapsed_seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    verdict: Verdict = field(default_factory=Verdict)
    spec_violations: list[str] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)
    #: 5xx answers by operation and status (no invariant; the agent's functions should have none).
    server_errors: Counter[str] = field(default_factory=Counter)
    directory: Path | None = None

    @property
    def shortfall(self) -> list[str]:
        """Fault kinds injected fewer times than ``min_faults``."""
        kinds = (*CALCOM_FAULT_KINDS, "replica_kill", "redis_kill", "pg_terminate", "pg_restart")
        return [kind for kind in kinds if self.faults[kind] < self.config.min_faults]

    @property
    def ok(self) -> bool:
        return not self.verdict.total and not self.spec_violations and not self.shortfall


def _environment(
    postgres: Postgres, redis: RedisServer, calcom: CalcomStandin, timeout: float, root: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "BOOKINGGUARD_DATABASE_URL": postgres.url(),
            "BOOKINGGUARD_REDIS_URL": redis.url,
            "BOOKINGGUARD_CALCOM__API_KEY": calcom.api_key,
            "BOOKINGGUARD_CALCOM__BASE_URL": calcom.base_url,
            "BOOKINGGUARD_CALCOM__WEBHOOK_SECRET": CALCOM_SECRET,
            "BOOKINGGUARD_CALCOM__CONNECT_TIMEOUT_SECONDS": str(timeout),
            "BOOKINGGUARD_CALCOM__READ_TIMEOUT_SECONDS": str(timeout),
            "BOOKINGGUARD_RETELL__API_KEY": RETELL_KEY,
            "BOOKINGGUARD_RETELL__AGENT_EVENT_TYPES": f'{{"{AGENT_ID}": {list(EVENT_TYPES)}}}',
            "BOOKINGGUARD_API__TOKENS": f'["faults:operate:{API_TOKEN}"]',
            "BOOKINGGUARD_API__RATE_LIMIT": "1000000/minute",
            "BOOKINGGUARD_VALIDATION__BASE_DELAY_SECONDS": "0.05",
            "BOOKINGGUARD_VALIDATION__RETRY_BUDGET_SECONDS": str(4 * timeout),
            "BOOKINGGUARD_CIRCUIT_BREAKER__COOLDOWN_SECONDS": "1",
            "BOOKINGGUARD_CIRCUIT_BREAKER__TIMEOUT_SECONDS": str(2.5 * timeout),
            "BOOKINGGUARD_MONITORING__INTERVAL_SECONDS": "3600",
            "BOOKINGGUARD_MONITORING__RECONCILE_GRACE_MINUTES": "0",
            "BOOKINGGUARD_LOGGING__LEVEL": "WARNING",
            # The host's spool, shared by both replicas and the commands, is the run's own.
            "BOOKINGGUARD_SPOOL__PATH": str(root / "spool.db"),
            "BOOKINGGUARD_SPOOL__REPLAY_INTERVAL_SECONDS": "2",
        }
    )
    return env


class _Infrastructure:
    """The servers the faults hit, and how each fault is carried out (blocking)."""

    def __init__(self, postgres: Postgres, redis: RedisServer, replicas: list[Replica]) -> None:
        self.postgres = postgres
        self.redis = redis
        self.replicas = replicas

    def apply(self, fault: InfraFault) -> None:
        if fault.kind == "replica_kill":
            replica = self.replicas[fault.target]
            replica.kill()
            replica.start()
            replica.wait_ready()
        elif fault.kind == "redis_kill":
            self.redis.kill()
            time.sleep(fault.down_seconds)
            self.redis.start()
        elif fault.kind == "pg_terminate":
            self.postgres.terminate_clients()
        elif fault.kind == "pg_restart":
            self.postgres.stop()
            time.sleep(fault.down_seconds)
            self.postgres.start()

    def settled(self) -> bool:
        """Every replica answers ``/readyz`` with ``"status": "ok"`` (nothing degraded)."""
        for replica in self.replicas:
            try:
                answer = httpx.get(f"{replica.url}/readyz", timeout=5)
            except httpx.TransportError:
                return False
            if answer.status_code != 200 or answer.json().get("status") != "ok":
                return False
        return True


def _command(env: dict[str, str], *args: str, output: Path | None = None) -> int:
    """Run ``bookingguard *args``; its exit code. ``output`` keeps what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "bookingguard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if output is not None:
        output.write_text(done.stdout + done.stderr, encoding="utf-8")
    return done.returncode


def _check(env: dict[str, str], output: Path) -> int:
    """``check --all`` once it could run: while a replica's scheduled run holds the
    monitor's writer lock, the command exits 3 (``MonitorBusyError``), and is run again."""
    for _ in range(_CHECK_TRIES):
        code = _command(env, "check", "--all", "--no-notify", "--json", output=output)
        if code != 3 or "MonitorBusyError" not in output.read_text(encoding="utf-8"):
            break
        time.sleep(1)
    return code


@contextmanager
def _directory(keep: Callable[[], bool]) -> Iterator[Path]:
    """A temporary directory, removed at the end unless ``keep()`` says otherwise then."""
    root = Path(tempfile.mkdtemp(prefix="bookingguard-faults-"))
    try:
        yield root
    finally:
        if not keep():
            shutil.rmtree(root, ignore_errors=True)


async def _drive(
    config: CampaignConfig,
    schedule: FaultSchedule,
    infra: _Infrastructure,
    calcom: CalcomStandin,
    result: CampaignResult,
) -> tuple[list[Answer], list[BreakerObservation]]:
    replicas = [(replica.name, replica.url) for replica in infra.replicas]
    async with Driver(
        replicas=replicas,
        standin=calcom,
        seed=config.seed,
        retell_key=RETELL_KEY,
        calcom_secret=CALCOM_SECRET,
        api_token=API_TOKEN,
        event_types=EVENT_TYPES,
    ) as driver:
        # Traffic runs at most ``_AHEAD`` operations past a fault still being carried out
        # (a replica restarting, say), so the faults stay spread over the operations.
        pending = [schedule.infra[0].at_operation if schedule.infra else math.inf]
        moved = asyncio.Condition()

        async def inject() -> None:
            try:
                for number, fault in enumerate(schedule.infra):
                    await driver.reached(fault.at_operation)
                    await asyncio.to_thread(infra.apply, fault)
                    result.faults[fault.kind] += 1
                    following = schedule.infra[number + 1 :]
                    pending[0] = following[0].at_operation if following else math.inf
                    async with moved:
                        moved.notify_all()
            finally:
                pending[0] = math.inf
                async with moved:
                    moved.notify_all()

        async def may_start() -> bool:
            async with moved:
                await moved.wait_for(lambda: driver.operations < pending[0] + _AHEAD)
            return driver.operations < config.operations or not injector.done()

        injector = asyncio.create_task(inject())
        traffic = [True]
        hooks = asyncio.create_task(driver.calcom_webhooks(keep_going=lambda: traffic[0]))
        polls = asyncio.create_task(driver.poll_breakers(keep_going=lambda: traffic[0]))
        try:
            await driver.run(may_start=may_start, concurrency=config.concurrency)
            await injector
        finally:
            calcom.plan_faults(None)
            result.faults.update(calcom.faults_delivered())
            await asyncio.to_thread(wait_until, "a settled system", infra.settled, seconds=120)
            traffic[0] = False
            await asyncio.gather(hooks, polls)
        result.operations = driver.operations
        result.answered = sum(1 for answer in driver.journal if answer.status is not None)
        result.server_errors = Counter(
            f"{answer.operation} {answer.status}"
            for answer in driver.journal
            if answer.status is not None and answer.status >= 500
        )
        result.conversations = driver.conversations
        return driver.journal, driver.observations


def _keep(root: Path, evidence: Evidence, verdict: Verdict) -> None:
    """The journal, the ledger and every violation, as JSON beside the logs."""
    documents = {
        "journal.json": [dataclasses.asdict(answer) for answer in evidence.answers],
        "ledger.json": evidence.ledger,
        "violations.json": verdict.violations,
    }
    for name, document in documents.items():
        (root / name).write_text(json.dumps(document, indent=1, default=str))


def run_campaign(config: CampaignConfig) -> CampaignResult:
    """Run one campaign (blocking) and judge it."""
    began = time.monotonic()
    result = CampaignResult(config=config)
    schedule = FaultSchedule.build(
        config.seed,
        operations=config.operations,
        infra_per_kind=config.infra_per_kind,
        calcom_rate=config.calcom_rate,
        timeout_seconds=config.read_timeout,
    )

    # A run that finds a violation keeps its evidence whatever was asked: a failure in CI
    # can then be read afterwards, not only inferred.
    def keep() -> bool:
        return config.keep_directory or result.verdict.total > 0

    with _directory(keep) as root, ExitStack() as stack:
        calcom = CalcomStandin(opening_hours=(0, 23)).start()
        stack.callback(calcom.stop)
        stack.callback(calcom.clear_violations)
        for event_type in EVENT_TYPES:
            calcom.add_event_type(event_type)
        postgres = Postgres(root / "pg")
        postgres.init()
        stack.callback(postgres.close)
        redis = RedisServer(root / "redis.log")
        redis.start()
        stack.callback(redis.close)
        env = _environment(postgres, redis, calcom, config.read_timeout, root)
        if _command(env, "db", "upgrade") != 0:
            raise RuntimeError("bookingguard db upgrade failed")
        replicas = [Replica(name, root, env) for name in ("replica-a", "replica-b")]
        for replica in replicas:
            stack.callback(replica.close)
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        infra = _Infrastructure(postgres, redis, replicas)
        calcom.plan_faults(schedule.calcom)
        answers, observations = asyncio.run(_drive(config, schedule, infra, calcom, result))
        result.commands["reconcile"] = _command(
            env,
            *("reconcile", "--since", "1d", "--ahead", "90d", "--no-notify", "--json"),
            output=root / "reconcile.out",
        )
        result.commands["check --all"] = _check(env, root / "check.out")
        with postgres.connect() as connection:
            database = read_database(connection)
        evidence = Evidence(
            answers=answers,
            ledger=calcom.bookings(),
            database=database,
            observations=observations,
            metric_transitions=scrape_transitions([replica.url for replica in replicas]),
        )
        result.spec_violations = calcom.violations
        result.verdict = check(evidence)
        if keep():
            result.directory = root
            _keep(root, evidence, result.verdict)
    result.elapsed_seconds = time.monotonic() - began
    return result
