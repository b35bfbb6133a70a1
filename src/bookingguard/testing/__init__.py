"""Testing helpers shipped for users: in-memory stand-ins for bookingguard's outside systems.

Each fake implements the same protocol as the real part it replaces, and the contract
suites in ``tests/`` run over both, so a test that passes on the fake means what it says.
"""

from bookingguard.testing.booking import MemoryBookingStore
from bookingguard.testing.reconcile import InMemoryBookingSource

__all__ = ["InMemoryBookingSource", "MemoryBookingStore"]
