"""The manual review queue and its audit log."""

from bookingguard.review.queue import PRIORITY_BY_SEVERITY, audit, file_for_review

__all__ = ["PRIORITY_BY_SEVERITY", "audit", "file_for_review"]
