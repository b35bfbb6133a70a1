"""Errors of the booking path."""

from __future__ import annotations

from bookingguard.errors import BookingGuardError

__all__ = ["RollbackFailedError"]


class RollbackFailedError(BookingGuardError):
    """Rolling back a call's booking flags failed; nothing of the rollback was written."""

    code = "rollback_failed"

    def __init__(self, call_id: int, reason: str) -> None:
        super().__init__(f"rollback of call {call_id} failed: {reason}")
        self.call_id = call_id
