"""The notification outbox and its channels."""

from bookingguard.notify.outbox import Message, enqueue

__all__ = ["Message", "enqueue"]
