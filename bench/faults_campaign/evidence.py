"""What the checker judges, gathered once the system has settled.

The stand-in's ledger (every booking Cal.com holds, cancelled ones included), the
database's rows read with plain SQL (calls, appointments, review items, alerts,
webhook deliveries, the breaker's states and history), and each replica's
``/metrics`` (the breaker's transition counters, summed over its workers, kept
across its restarts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from bench.faults_campaign.driver import Answer, BreakerObservation
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Database", "Evidence", "read_database", "transition_counts"]

_QUERIES = {
    "calls": "SELECT id, retell_call_id, appointment_made, appointment_link_status, "
    "booking_failed, requires_manual_processing, session_outcome FROM calls",
    "appointments": "SELECT id, call_id, calcom_booking_uid, calcom_v2_booking_id, status, "
    "idempotency_key, starts_at FROM appointments",
    "reviews": "SELECT call_id, reason, status FROM manual_review_queue",
    "alerts": "SELECT id, alert_type, entity_type, entity_id, metadata::text AS metadata "
    "FROM data_consistency_alerts",
    "webhook_events": "SELECT event_key FROM webhook_events",
    "breaker_states": "SELECT circuit_key, state, version FROM circuit_breaker_states",
    "transitions": "SELECT id, circuit_key, from_state, to_state, version, at, decided_by "
    "FROM circuit_breaker_transitions ORDER BY circuit_key, version",
}


@dataclass
class Database:
    """The rows the checker reads, each a dict by column name."""

    calls: list[dict[str, Any]]
    appointments: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    webhook_events: set[str]
    breaker_states: list[dict[str, Any]]
    transitions: list[dict[str, Any]]


def read_database(connection: psycopg.Connection[Any]) -> Database:
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, sql in _QUERIES.items():
        cursor = connection.execute(sql)
        columns = [column.name for column in cursor.description or ()]
        tables[name] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return Database(
        calls=tables["calls"],
        appointments=tables["appointments"],
        reviews=tables["reviews"],
        alerts=tables["alerts"],
        webhook_events={row["event_key"] for row in tables["webhook_events"]},
        breaker_states=tables["breaker_states"],
        transitions=tables["transitions"],
    )


def transition_counts(metrics_text: str) -> Counter[tuple[str, str, str]]:
    """``bookingguard_circuit_transitions_total`` by (circuit, from_state, to_state)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "bookingguard_circuit_transitions":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                key = (labels["circuit"], labels["from_state"], labels["to_state"])
                counts[key] += int(sample.value)
    return counts


def scrape_transitions(urls: list[str]) -> Counter[tuple[str, str, str]]:
    """The transition counters of every replica, summed."""
    total: Counter[tuple[str, str, str]] = Counter()
    for url in urls:
        total += transition_counts(httpx.get(f"{url}/metrics", timeout=30).text)
    return total


@dataclass
class Evidence:
    """Everything the checker reads."""

    answers: list[Answer]
    ledger: list[dict[str, Any]]
    database: Database
    observations: list[BreakerObservation]
    metric_transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
