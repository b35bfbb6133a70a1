"""Step 6 of the booking path: a Cal.com booking we could not keep is cancelled.

When the cancel fails too, a critical alert, a review item and a notice say that
Cal.com holds a booking nobody will come to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from bookingguard.booking.guarded_calcom import GuardedCalcom
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.store import BookingStore
from bookingguard.calcom import CalcomBooking

__all__ = ["Compensation"]

log = logging.getLogger(__name__)


class Compensation:
    """Cancels the Cal.com bookings the booking path could not record or keep."""

    def __init__(
        self,
        *,
        calcom: GuardedCalcom,
        store: BookingStore,
        clock: Callable[[], datetime],
        metrics: BookingMetrics | None = None,
    ) -> None:
        self._calcom = calcom
        self._store = store
        self._clock = clock
        self._metrics = metrics

    async def cancel(self, booking: CalcomBooking, *, call_id: int) -> bool:
        """Cancel ``booking``; False (alerted and filed for review) when it stays booked."""
        try:
            await self._calcom.cancel(booking)
        except Exception as exc:
            log.error("compensation of Cal.com booking %s failed", booking.uid, exc_info=True)
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            try:
                await self._store.record_compensation_failure(
                    call_id, calcom_booking_uid=booking.uid, error=error, now=self._clock()
                )
            except SQLAlchemyError:
                log.critical(
                    "could not record failed compensation of %s", booking.uid, exc_info=True
                )
            return self._counted("failed")
        return self._counted("done")

    def _counted(self, outcome: str) -> bool:
        if self._metrics is not None:
            self._metrics.compensations.labels(outcome=outcome).inc()
        return outcome == "done"
