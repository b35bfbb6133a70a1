"""Settling the claims of requests that died: what Cal.com holds decides.

A request that claimed its key and died (its process killed, its replica lost) before it
recorded Cal.com's answer leaves the claim in ``pending_creation``. A retried request
for the key takes it over once it is stale (``validation.claim_stale_seconds``); when
none comes (the call has ended), ``serve`` settles it in the background, every
``SETTLE_INTERVAL_SECONDS``, with ``BookingService.settle``: the booking is looked up
at Cal.com by the key, never created. A live one is recorded and its call linked; a
cancelled one cancels the claim; none releases it. The last two file the call for a
human to call back. Every replica may run this at once: a claim is taken over (compare
and set on its last change) before it is settled, so one of them settles it. A claim
whose look-up fails is tried again once it is stale again; the monitor's
``stale_booking_claim`` finds one that no settling reaches.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import anyio

from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.service import BookingService
from bookingguard.booking.store import BookingStore
from bookingguard.booking.types import BookingResult
from bookingguard.settings import ValidationSettings

__all__ = ["SETTLE_INTERVAL_SECONDS", "ClaimSettler"]

log = logging.getLogger(__name__)

#: How often ``serve`` looks for claims to settle.
SETTLE_INTERVAL_SECONDS = 60.0
#: Claims settled per pass at most (oldest first): a pass stays short after an outage.
SETTLE_BATCH = 50
#: Claims taken longer ago than this are left to the monitor and a human: the index on
#: the appointments' creation bounds the look-up to this span.
SETTLE_SPAN = timedelta(days=1)


class ClaimSettler:
    """Settles stale claims through the booking service, a batch per pass; each settled
    one counted in ``bookingguard_claims_settled_total`` by its result."""

    def __init__(
        self,
        *,
        service: BookingService,
        store: BookingStore,
        clock: Callable[[], datetime],
        stale_seconds: float = ValidationSettings().claim_stale_seconds,
        batch: int = SETTLE_BATCH,
        metrics: BookingMetrics | None = None,
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._store = store
        self._clock = clock
        self._stale = timedelta(seconds=stale_seconds)
        self._batch = batch

    async def settle(self) -> Counter[BookingResult]:
        """One pass: every stale claim (up to the batch) settled; how each ended."""
        now = self._clock()
        stale = await self._store.stale_claims(
            before=now - self._stale, created_since=now - SETTLE_SPAN, limit=self._batch
        )
        settled: Counter[BookingResult] = Counter()
        for claim in stale:
            try:
                result = await self._service.settle(claim)
            except Exception:
                log.warning("could not settle the claim of key %s", claim.key, exc_info=True)
                continue
            if result is not None:
                log.warning("settled the stale claim of key %s: %s", claim.key, result.value)
                settled[result] += 1
                if self._metrics is not None:
                    self._metrics.claims_settled.labels(result=result.value).inc()
        return settled

    async def run_forever(
        self,
        interval_seconds: float = SETTLE_INTERVAL_SECONDS,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """Settle at once, then every ``interval_seconds``, until cancelled."""
        while True:
            try:
                await self.settle()
            except Exception:
                log.exception("settling stale claims failed")
            await sleep(interval_seconds)
