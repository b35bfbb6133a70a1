"""The campaign's traffic: agent conversations, Retell and Cal.com webhooks, breaker polls.

A conversation is one Retell call: ``call_started``, ``check_availability``, a
``book_appointment`` sent as Retell sends it (the same signed request up to three
times: to the same replica, to the other one, or two at once), sometimes a
reschedule and a cancel (retried alike), then ``call_ended`` and ``call_analyzed``.
Every request is signed as Retell signs it and goes to a replica drawn from the
conversation's own seeded stream. Cal.com's webhook deliveries follow the stand-in's
changes in order, signed, each retried on another replica until one acknowledges it.
Every answer (or the lack of one) is kept in the journal the checker reads.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import calcom_headers, function_body, retell_headers, webhook_body

__all__ = ["AGENT_ID", "Answer", "BreakerObservation", "Driver"]

AGENT_ID = "agent_faults"
_ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo")
#: Retell sends a function call at most three times (the first and two retries).
_MOST_TRIES = 3
_WEBHOOK_TRIES = 6


@dataclass(frozen=True)
class Answer:
    """One request the driver sent and what came back (``status`` None: no HTTP answer)."""

    operation: str
    call_id: str | None
    replica: str
    status: int | None
    body: dict[str, Any] | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class BreakerObservation:
    """A circuit as ``/api/v1/circuit-breakers`` showed it."""

    circuit_key: str
    state: str
    version: int
    store: str
    replica: str


class Driver:
    """Sends the campaign's traffic to the replicas and journals every answer."""

    def __init__(
        self,
        *,
        replicas: Sequence[tuple[str, str]],
        standin: CalcomStandin,
        seed: int,
        retell_key: str,
        calcom_secret: str,
        api_token: str,
        event_types: Sequence[int],
        days_ahead: int = 60,
    ) -> None:
        self.replicas = list(replicas)
        self.standin = standin
        self.seed = seed
        self.retell_key = retell_key
        self.calcom_secret = calcom_secret
        self.api_token = api_token
        self.event_types = list(event_types)
        self.days_ahead = days_ahead
        self.journal: list[Answer] = []
        self.observations: list[BreakerObservation] = []
        self.operations = 0
        self.conversations = 0
        self._http: httpx.AsyncClient | None = None
        self._progress = asyncio.Condition()

    # -- plumbing ----------------------------------------------------------------------

    async def __aenter__(self) -> Driver:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self._http = httpx.AsyncClient(timeout=30.0, limits=limits)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _post(
        self,
        operation: str,
        replica: int,
        path: str,
        body: bytes,
        headers: dict[str, str],
        **kw: Any,
    ) -> Answer:
        assert self._http is not None
        name, url = self.replicas[replica]
        self.operations += 1
        async with self._progress:
            self._progress.notify_all()
        try:
            response = await self._http.post(url + path, content=body, headers=headers)
        except httpx.TransportError as exc:
            answer = Answer(operation, kw.pop("call_id", None), name, None, None, kw)
            answer.detail["error"] = type(exc).__name__
        else:
            try:
                document = response.json() if response.content else None
            except ValueError:
                document = None
            parsed = document if isinstance(document, dict) else None
            answer = Answer(
                operation, kw.pop("call_id", None), name, response.status_code, parsed, kw
            )
        self.journal.append(answer)
        return answer

    async def reached(self, operations: int) -> None:
        """Return once ``operations`` requests were sent."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.operations >= operations)

    # -- conversations -----------------------------------------------------------------

    async def run(self, *, may_start: Callable[[], Awaitable[bool]], concurrency: int) -> None:
        """Start conversations on ``concurrency`` lanes while ``await may_start()`` (which may
        hold a lane back); return when every lane has stopped."""
        numbers = iter(range(1_000_000_000))

        async def lane() -> None:
            while await may_start():
                await self.conversation(next(numbers))

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    async def conversation(self, number: int) -> None:
        """One call, from ``call_started`` to ``call_analyzed``."""
        self.conversations += 1
        rng = random.Random(f"{self.seed}:conversation:{number}")
        call_id = f"call_{self.seed}_{number}"
        zone = rng.choice(_ZONES)
        event_type = rng.choice(self.event_types)
        started_ms = int(time.time() * 1000)
        await self._retell_event("call_started", call_id, rng, start_timestamp=started_ms)
        offered = await self._availability(call_id, zone, event_type, rng)
        start = rng.choice(offered) if offered and rng.random() < 0.3 else self._any_slot(rng, zone)
        booking = {
            "start": start,
            "event_type_id": event_type,
            "name": f"Caller {number}",
            "email": f"caller{number}@example.com",
            "phone": f"+1555{number % 10_000_000:07d}",
            "time_zone": zone,
        }
        answers = await self._function("book_appointment", booking, call_id, rng)
        booked = any(a.body is not None and a.body.get("booked") is True for a in answers)
        if booked and rng.random() < 0.35:
            moved = {"start": self._any_slot(rng, zone), "time_zone": zone}
            await self._function("reschedule_appointment", moved, call_id, rng)
        if booked and rng.random() < 0.25:
            await self._function("cancel_appointment", {"time_zone": zone}, call_id, rng)
        ended = {"start_timestamp": started_ms, "end_timestamp": int(time.time() * 1000)}
        await self._retell_event("call_ended", call_id, rng, call_status="ended", **ended)
        await self._retell_event("call_analyzed", call_id, rng, call_status="ended", **ended)

    def _any_slot(self, rng: random.Random, zone: str) -> str:
        """A half hour from tomorrow to ``days_ahead`` days out, in the caller's zone."""
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        moment = today + timedelta(
            days=rng.randint(1, self.days_ahead), minutes=30 * rng.randrange(48)
        )
        return moment.astimezone(ZoneInfo(zone)).isoformat()

    async def _availability(
        self, call_id: str, zone: str, event_type: int, rng: random.Random
    ) -> list[str]:
        args = {"time_zone": zone, "event_type_id": event_type}
        answers = await self._function("check_availability", args, call_id, rng)
        for answer in answers:
            if answer.body is not None and answer.body.get("slots"):
                return [str(slot) for slot in answer.body["slots"]]
        return []

    async def _function(
        self, name: str, args: dict[str, Any], call_id: str, rng: random.Random
    ) -> list[Answer]:
        """The same signed request, as Retell retries it; every answer that came back."""
        body = function_body(name, args, call_id=call_id, agent_id=AGENT_ID)
        headers = retell_headers(body, self.retell_key)
        path = f"/retell/functions/{name}"
        tries = rng.choice((1, 1, 2, 3))
        mode = rng.choice(("same", "other", "concurrent"))
        first = rng.randrange(len(self.replicas))
        other = (first + 1) % len(self.replicas)
        targets = [first] + [first if mode == "same" else other] * (tries - 1)
        detail = {"args": args}
        sent: list[Answer] = []
        if mode == "concurrent" and tries > 1:
            sent += await asyncio.gather(
                *(
                    self._post(name, t, path, body, headers, call_id=call_id, **detail)
                    for t in targets[:2]
                )
            )
            targets = targets[2:]
        for target in targets:
            sent.append(
                await self._post(name, target, path, body, headers, call_id=call_id, **detail)
            )
        while len(sent) < _MOST_TRIES and all(a.status is None for a in sent):
            await asyncio.sleep(0.3)
            target = (first + len(sent)) % len(self.replicas)
            sent.append(
                await self._post(name, target, path, body, headers, call_id=call_id, **detail)
            )
        return [a for a in sent if a.status is not None]

    async def _retell_event(
        self, event: str, call_id: str, rng: random.Random, **fields: Any
    ) -> None:
        body = webhook_body(event, call_id, agent_id=AGENT_ID, **fields)
        headers = retell_headers(body, self.retell_key)
        await self._deliver(
            "retell_webhook", "/webhooks/retell", body, headers, rng, call_id=call_id, event=event
        )

    async def _deliver(
        self,
        operation: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        rng: random.Random,
        **detail: Any,
    ) -> None:
        """Send until a replica acknowledges it (2xx), alternating replicas, a few times."""
        target = rng.randrange(len(self.replicas))
        for _ in range(_WEBHOOK_TRIES):
            answer = await self._post(operation, target, path, body, headers, **detail)
            if answer.acknowledged:
                return
            await asyncio.sleep(0.3)
            target = (target + 1) % len(self.replicas)

    # -- Cal.com's webhooks and the breaker's polls ------------------------------------

    async def calcom_webhooks(self, *, keep_going: Callable[[], bool]) -> None:
        """Deliver the stand-in's changes as Cal.com would, in order, until told to stop;
        then what is left."""
        rng = random.Random(f"{self.seed}:calcom-webhooks")
        while True:
            running = keep_going()
            for trigger, uid in self.standin.take_webhooks():
                body = self.standin.webhook_body(trigger, uid)
                headers = calcom_headers(body, self.calcom_secret)
                await self._deliver(
                    "calcom_webhook",
                    "/webhooks/calcom",
                    body,
                    headers,
                    rng,
                    trigger=trigger,
                    uid=uid,
                )
            if not running:
                return
            await asyncio.sleep(0.2)

    async def poll_breakers(self, *, keep_going: Callable[[], bool]) -> None:
        """Read ``/api/v1/circuit-breakers`` from the replicas in turn while ``keep_going()``."""
        assert self._http is not None
        turn = 0
        headers = {"Authorization": f"Bearer {self.api_token}"}
        while keep_going():
            name, url = self.replicas[turn % len(self.replicas)]
            turn += 1
            try:
                response = await self._http.get(
                    f"{url}/api/v1/circuit-breakers", headers=headers, timeout=5
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                self.observations += [
                    BreakerObservation(
                        c["circuit_key"], c["state"], int(c["version"]), str(c["store"]), name
                    )
                    for c in response.json()
                ]
            await asyncio.sleep(0.25)
