"""Step 6 of the booking path: a Cal.com booking we could not keep is cancelled.

When the cancel fails too, a critical alert, a review item and a notice say that
Cal.com holds a booking nobody will come to (in the spool while the database is down).
"""

from __future__ import annotations

import logging

from bookingguard.booking.failures import FailureRecorder
from bookingguard.booking.guarded_calcom import GuardedCalcom
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.calcom import CalcomBooking

__all__ = ["Compensation"]

log = logging.getLogger(__name__)


class Compensation:
    """Cancels the Cal.com bookings the booking path could not record or keep."""

    def __init__(
        self,
        *,
        calcom: GuardedCalcom,
        failures: FailureRecorder,
        metrics: BookingMetrics | None = None,
    ) -> None:
        self._calcom = calcom
        self._failures = failures
        self._metrics = metrics

    async def cancel(self, booking: CalcomBooking, *, call_id: int, retell_call_id: str) -> bool:
        """Cancel ``booking``; False (alerted and filed for review) when it stays booked."""
        try:
            await self._calcom.cancel(booking)
        except Exception as exc:
            log.error("compensation of Cal.com booking %s failed", booking.uid, exc_info=True)
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            await self._failures.compensation_failed(
                retell_call_id, call_id=call_id, calcom_booking_uid=booking.uid, error=error
            )
            return self._counted("failed")
        return self._counted("done")

    def _counted(self, outcome: str) -> bool:
        if self._metrics is not None:
            self._metrics.compensations.labels(outcome=outcome).inc()
        return outcome == "done"
