"""The consistency monitor: rules, runs, alerts, notifications, reconciliation, scheduling."""

from __future__ import annotations

from bookingguard.monitoring.alerting import AlertPolicy, RuleOutcome
from bookingguard.monitoring.rules import RULES, Rule, Window
from bookingguard.monitoring.runner import Monitor, RunReport

__all__ = ["RULES", "AlertPolicy", "Monitor", "Rule", "RuleOutcome", "RunReport", "Window"]
