"""Realistic synthetic data for a newcomer's first look: ``bookingguard demo``.

Customers, calls over ``days`` days, their appointments, two circuit breakers
with some history, and a controlled, printed share of each inconsistency the
monitor looks for, written past the database-side guarantees (which would
otherwise prevent or correct them). A few inconsistent writes are also made
*with* the guarantees on, so the database's own auto-corrections show up.
Everything is drawn from one ``random.Random(seed)``: the same seed and ``now``
give the same data.

``plan`` decides which kind of call each row is, ``rows`` draws the rows,
``circuits`` gives the breakers their history through the breaker's own store,
and ``load`` writes it all.
"""

from bookingguard.demo.load import DemoSummary, ProgressCallback, count_calls, load_demo, reset_data
from bookingguard.demo.plan import DEFAULT_SHARES

__all__ = [
    "DEFAULT_SHARES",
    "DemoSummary",
    "ProgressCallback",
    "count_calls",
    "load_demo",
    "reset_data",
]
