"""Enforced timeouts for many concurrent calls with one timer instead of one per call.

``asyncio.timeout`` schedules and cancels a timer handle on every call, which is
most of a guarded call's overhead. ``Deadlines`` keeps the in-flight calls in a
dict and one loop timer armed for the earliest deadline: registering a call is a
dict insert, and calls with the same timeout never move the timer. An expired
call's task is cancelled exactly as ``asyncio.timeout`` does it (``cancel`` then
``uncancel``), so a cancellation from outside still propagates as cancellation.
"""

from __future__ import annotations

import asyncio
import itertools

__all__ = ["Deadline", "Deadlines"]


class Deadline:
    """One call's deadline; ``expired`` is set when it was cancelled for running too long."""

    __slots__ = ("at", "cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[object], at: float) -> None:
        self.task = task
        self.at = at
        self.cancelling = task.cancelling()
        self.expired = False


class Deadlines:
    """The in-flight deadlines of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop = loop
        self._entries: dict[int, Deadline] = {}
        self._ids = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def start(self, timeout: float) -> tuple[int, Deadline]:
        """Register the current task to be cancelled ``timeout`` seconds from now."""
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        deadline = Deadline(task, self._loop.time() + timeout)
        ident = next(self._ids)
        self._entries[ident] = deadline
        if deadline.at < self._armed_at:
            self._arm(deadline.at)
        return ident, deadline

    def finish(self, ident: int, deadline: Deadline) -> bool:
        """Forget the deadline; True if it had expired (and its cancellation is withdrawn)."""
        self._entries.pop(ident, None)
        if deadline.expired:
            return deadline.task.uncancel() <= deadline.cancelling
        return False

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_at = float("inf")
        now = self._loop.time()
        earliest = float("inf")
        for ident, deadline in list(self._entries.items()):
            if deadline.at <= now:
                del self._entries[ident]
                deadline.expired = True
                deadline.task.cancel()
            else:
                earliest = min(earliest, deadline.at)
        if earliest != float("inf"):
            self._arm(earliest)
