"""The consistency monitor: rules, runs, alerts, notifications, reconciliation, scheduling."""

from __future__ import annotations

from bookingguard.monitoring.alerting import AlertPolicy, RuleOutcome
from bookingguard.monitoring.reconcile import BookingSource, Reconciler, ReconcileReport
from bookingguard.monitoring.rules import RULES, Rule, Window
from bookingguard.monitoring.runner import Monitor, RunReport
from bookingguard.monitoring.service import MonitoringService

__all__ = [
    "RULES",
    "AlertPolicy",
    "BookingSource",
    "Monitor",
    "MonitoringService",
    "ReconcileReport",
    "Reconciler",
    "Rule",
    "RuleOutcome",
    "RunReport",
    "Window",
]
