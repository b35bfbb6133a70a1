"""Detection rules: each one set-based SQL predicate over calls or appointments.

The runner turns a rule into a handful of set-based statements (select, store, fix);
nothing here loops over rows. ``model`` says what a rule is, ``catalog`` holds the
rules, ``plans`` the statements that find their entities fast.
"""

from __future__ import annotations

from bookingguard.monitoring.rules.catalog import RULES, STALE_CLAIM_AFTER, rule_named
from bookingguard.monitoring.rules.model import Reach, ReachBounds, Rule, Window
from bookingguard.monitoring.rules.plans import SharedScan, reach, shared_call_scan, windowed

__all__ = [
    "RULES",
    "STALE_CLAIM_AFTER",
    "Reach",
    "ReachBounds",
    "Rule",
    "SharedScan",
    "Window",
    "reach",
    "rule_named",
    "shared_call_scan",
    "windowed",
]
